"""Metadata reads: ``EntityDefinitions``, their ``Attributes`` and relationships, ``RelationshipDefinitions``.

Metadata collections are small, so ``$filter`` runs as a Python predicate over the JSON records. Items
created less than the metadata delay ago are hidden unless the request sends ``Consistency: Strong``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ApiError, bad_request, entity_not_found
from .exchange import ApiRequest
from .odata_filter import QueryError, parse_filter, parse_select, to_predicate
from .organization import Organization
from .schema import Entity, attribute_json
from .values import EdmType

_OPTIONS = {"$select", "$filter"}


def _strong(request: ApiRequest) -> bool:
    return (request.header("consistency") or "").lower() == "strong"


def _check_options(request: ApiRequest, allowed: set[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise bad_request(f"The query parameter {name} is not supported")


def _select(record: Mapping[str, Any], request: ApiRequest, type_name: str) -> dict[str, Any]:
    """Apply ``$select`` to one metadata record; ``MetadataId`` and ``@odata.type`` always come."""
    text = request.query.get("$select")
    if not text:
        return dict(record)
    try:
        names = parse_select(text)
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc
    chosen = {k: v for k, v in record.items() if k in ("MetadataId", "@odata.type")}
    for name in names:
        if name not in record:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
            )
        chosen[name] = record[name]
    return chosen


def _entity(org: Organization, logical_name: str) -> Entity:
    entity = org.catalog.entity(logical_name)
    if entity is None:
        raise entity_not_found(logical_name)
    return entity


def entity_definition(org: Organization, request: ApiRequest, logical_name: str) -> dict[str, Any]:
    """``GET EntityDefinitions(LogicalName='x')``."""
    _check_options(request, {"$select"})
    entity = _entity(org, logical_name)
    body = _select(entity.to_json(), request, "EntityMetadata")
    return {"@odata.context": f"{request.base_url}$metadata#EntityDefinitions/$entity", **body}


def _edm(value: object) -> EdmType:
    if isinstance(value, bool):
        return EdmType.BOOLEAN
    if isinstance(value, int):
        return EdmType.INT32
    return EdmType.STRING


def entity_children(
    org: Organization, request: ApiRequest, logical_name: str, collection: str, item: str
) -> dict[str, Any]:
    """A table's ``Attributes``, ``ManyToOneRelationships`` or ``OneToManyRelationships`` (or one column)."""
    entity = _entity(org, logical_name)
    now, strong = org.clock.now(), _strong(request)
    context = f"{request.base_url}$metadata#EntityDefinitions('{logical_name}')/{collection}"
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
            return {
                "@odata.context": f"{context}/$entity",
                **_select(attribute_json(entity, attribute), request, "AttributeMetadata"),
            }
        records = [
            attribute_json(entity, a)
            for a in entity.attributes.values()
            if org.catalog.attribute(entity, a.logical_name, now, strong)
        ]
        type_name = "AttributeMetadata"
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
        type_name = "OneToManyRelationshipMetadata"
    _check_options(request, _OPTIONS)
    if request.query.get("$filter"):
        records = _filtered(records, request.query["$filter"], type_name)
    return {"@odata.context": context, "value": [_select(r, request, type_name) for r in records]}


def _filtered(records: list[dict[str, Any]], text: str, type_name: str) -> list[dict[str, Any]]:
    known: dict[str, EdmType] = {}
    for record in records:
        for key, value in record.items():
            if value is not None and not isinstance(value, dict | list):
                known[key] = _edm(value)

    def resolve(name: str) -> EdmType:
        if name not in known:
            raise QueryError(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
            )
        return known[name]

    try:
        predicate = to_predicate(parse_filter(text), resolve)
        return [r for r in records if predicate(r)]
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc


def relationship_definition(org: Organization, request: ApiRequest, schema_name: str) -> dict[str, Any]:
    """``GET RelationshipDefinitions(SchemaName='x')``."""
    _check_options(request, {"$select"})
    rel = org.catalog.relationship(schema_name, org.clock.now(), _strong(request))
    if rel is None:
        raise ApiError(404, "0x80040217", f"Could not find a relationship with SchemaName = '{schema_name}'.")
    body = _select(rel.to_json(), request, "RelationshipMetadataBase")
    return {"@odata.context": f"{request.base_url}$metadata#RelationshipDefinitions/$entity", **body}


def relationship_by_id(org: Organization, request: ApiRequest, metadata_id: str) -> dict[str, Any]:
    """``GET RelationshipDefinitions(<MetadataId>)``, the address ``OData-EntityId`` gives."""
    for rel in org.catalog.relationships.values():
        if rel.metadata_id == metadata_id.lower():
            return relationship_definition(org, request, rel.schema_name)
    raise ApiError(404, "0x80040217", f"Could not find a relationship with MetadataId = '{metadata_id}'.")
