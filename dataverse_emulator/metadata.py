"""Metadata reads: ``EntityDefinitions``, their ``Attributes`` and relationships, ``RelationshipDefinitions``.

Metadata collections are small, so ``$filter`` runs as a Python predicate over the JSON records. Items
created less than the metadata delay ago are hidden unless the request sends ``Consistency: Strong``.

``$select`` and ``$filter`` are checked against the declared type of what is addressed, not against the
records found, so a misspelt property is refused even when a collection happens to be empty (as the
real service, which validates the URL before it runs the query). A single item accepts the properties
of its own type too, as if the request had cast to it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .errors import ApiError, bad_request, entity_not_found
from .exchange import ApiRequest
from .odata_filter import And, Expr, Not, Or, QueryError, StringCall, parse_filter, parse_select, to_predicate
from .organization import Organization
from .schema import (
    ATTRIBUTE_PROPERTIES,
    ENTITY_PROPERTIES,
    RELATIONSHIP_PROPERTIES,
    Entity,
    Relationship,
    attribute_json,
)
from .values import EdmType

_OPTIONS = {"$select", "$filter"}
_ALWAYS = ("@odata.type", "MetadataId")
"""What every metadata answer carries whatever ``$select`` says."""


def _strong(request: ApiRequest) -> bool:
    return (request.header("consistency") or "").lower() == "strong"


def _check_options(request: ApiRequest, allowed: set[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise bad_request(f"The query parameter {name} is not supported")


def _unknown(name: str, type_name: str) -> str:
    return f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."


def _selected(request: ApiRequest, known: Collection[str], type_name: str) -> list[str] | None:
    """The ``$select`` names after checking each is a property of the type (``None``: no ``$select``)."""
    text = request.query.get("$select")
    if not text:
        return None
    try:
        names = parse_select(text)
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc
    for name in names:
        if name not in known:
            raise bad_request(_unknown(name, type_name))
    return names


def _project(record: Mapping[str, Any], names: list[str] | None) -> dict[str, Any]:
    """One record cut down to ``names``; ``MetadataId`` and ``@odata.type`` always come."""
    if names is None:
        return dict(record)
    chosen = {k: record[k] for k in _ALWAYS if k in record}
    chosen.update({name: record[name] for name in names if name in record})
    return chosen


def _single(
    record: Mapping[str, Any], request: ApiRequest, declared: Collection[str], type_name: str
) -> dict[str, Any]:
    """``$select`` on one item: the declared type's properties and the item's own are accepted."""
    known = set(declared) | {k for k in record if not k.startswith("@")}
    return _project(record, _selected(request, known, type_name))


def _entity(org: Organization, logical_name: str) -> Entity:
    entity = org.catalog.entity(logical_name)
    if entity is None:
        raise entity_not_found(logical_name)
    return entity


def entity_definition(org: Organization, request: ApiRequest, logical_name: str) -> dict[str, Any]:
    """``GET EntityDefinitions(LogicalName='x')``."""
    _check_options(request, {"$select"})
    entity = _entity(org, logical_name)
    body = _single(entity.to_json(), request, ENTITY_PROPERTIES, "EntityMetadata")
    return {"@odata.context": f"{request.base_url}$metadata#EntityDefinitions/$entity", **body}


def entity_children(
    org: Organization, request: ApiRequest, logical_name: str, collection: str, item: str
) -> dict[str, Any]:
    """A table's ``Attributes``, ``ManyToOneRelationships`` or ``OneToManyRelationships`` (or one column)."""
    entity = _entity(org, logical_name)
    now, strong = org.clock.now(), _strong(request)
    context = f"{request.base_url}$metadata#EntityDefinitions('{logical_name}')/{collection}"
    declared: Mapping[str, EdmType | None]
    if collection == "Attributes":
        if item:
            _check_options(request, {"$select"})
            attribute = org.catalog.attribute(entity, item, now, strong)
            if attribute is None:
                raise ApiError(
                    404,
                    "0x80041103",
                    f"'{entity.logical_name}' entity doesn't contain attribute with Name = '{item}' and "
                    "NameMapping = 'Logical'.",
                )
            record = attribute_json(entity, attribute)
            body = _single(record, request, ATTRIBUTE_PROPERTIES, "AttributeMetadata")
            return {"@odata.context": f"{context}/$entity", **body}
        records = [
            attribute_json(entity, a)
            for a in entity.attributes.values()
            if org.catalog.attribute(entity, a.logical_name, now, strong)
        ]
        declared, type_name = ATTRIBUTE_PROPERTIES, "AttributeMetadata"
    else:
        if item:
            raise bad_request(
                f"Address a relationship through RelationshipDefinitions, not {collection}(...)."
            )
        rels = org.catalog.relationships.values()
        if collection == "ManyToOneRelationships":
            chosen = [r for r in rels if r.referencing_entity == entity.logical_name]
        else:
            chosen = [r for r in rels if r.referenced_entity == entity.logical_name]
        records = [r.to_json() for r in chosen if strong or r.visible_at <= now]
        declared, type_name = RELATIONSHIP_PROPERTIES, "OneToManyRelationshipMetadata"
    _check_options(request, _OPTIONS)
    names = _selected(request, declared, type_name)
    if request.query.get("$filter"):
        records = _filtered(records, request.query["$filter"], declared, type_name)
    return {"@odata.context": context, "value": [_project(r, names) for r in records]}


def _string_calls(expr: Expr) -> list[str]:
    """The string functions a filter uses (metadata queries support none of them)."""
    if isinstance(expr, And | Or):
        return _string_calls(expr.left) + _string_calls(expr.right)
    if isinstance(expr, Not):
        return _string_calls(expr.operand)
    return [expr.func] if isinstance(expr, StringCall) else []


def _filtered(
    records: list[dict[str, Any]], text: str, declared: Mapping[str, EdmType | None], type_name: str
) -> list[dict[str, Any]]:
    def resolve(name: str) -> EdmType:
        edm = declared.get(name)
        if edm is None:
            if name in declared:
                raise QueryError(
                    f"The property '{name}' of 'Microsoft.Dynamics.CRM.{type_name}' is a complex property "
                    "and cannot be compared in $filter."
                )
            raise QueryError(_unknown(name, type_name))
        return edm

    try:
        expr = parse_filter(text)
        for func in _string_calls(expr):
            raise ApiError(
                400, "0x8006088a", f'The "{func}" function isn\'t supported for Metadata Entities.'
            )
        predicate = to_predicate(expr, resolve)
        return [r for r in records if predicate(r)]
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc


def _relationship_answer(request: ApiRequest, rel: Relationship) -> dict[str, Any]:
    body = _single(rel.to_json(), request, ("MetadataId", "SchemaName"), "RelationshipMetadataBase")
    return {"@odata.context": f"{request.base_url}$metadata#RelationshipDefinitions/$entity", **body}


def relationship_definition(org: Organization, request: ApiRequest, schema_name: str) -> dict[str, Any]:
    """``GET RelationshipDefinitions(SchemaName='x')``; the name matches case-insensitively."""
    _check_options(request, {"$select"})
    rel = org.catalog.relationship(schema_name, org.clock.now(), _strong(request))
    if rel is None:
        raise ApiError(404, "0x80040217", f"Could not find a relationship with SchemaName = '{schema_name}'.")
    return _relationship_answer(request, rel)


def relationship_by_id(org: Organization, request: ApiRequest, metadata_id: str) -> dict[str, Any]:
    """``GET RelationshipDefinitions(<MetadataId>)``, the address ``OData-EntityId`` gives."""
    _check_options(request, {"$select"})
    now, strong = org.clock.now(), _strong(request)
    for rel in org.catalog.relationships.values():
        if rel.metadata_id == metadata_id.lower() and (strong or rel.visible_at <= now):
            return _relationship_answer(request, rel)
    raise ApiError(404, "0x80040217", f"Could not find a relationship with MetadataId = '{metadata_id}'.")
