"""Metadata addresses: ``EntityDefinitions``, ``RelationshipDefinitions``, their children and casts.

An address is a root set, an optional key (``LogicalName='x'``, ``SchemaName='x'`` or a MetadataId),
an optional child collection with an optional key, and an optional type-cast segment. Each is read
once here into a ``MetadataPath`` and answered by the handler of its shape, so every client's way of
writing the same question (by name or by MetadataId, cast or not) gets the same answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request, entity_not_found
from .exchange import ApiRequest
from .metadata import check_options, filtered, is_strong, project, selected, single
from .metadata_types import (
    NAMESPACE,
    cast_properties,
    derived_json,
    expanded,
    is_of,
    parse_expand,
    unknown_type,
)
from .organization import Organization
from .schema import (
    ENTITY_PROPERTIES,
    RELATIONSHIP_PROPERTIES,
    Attribute,
    Entity,
    Relationship,
    attribute_json,
)
from .values import EdmType

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_KEY = re.compile(rf"^(?:(LogicalName|SchemaName)='([^']*)'|(?:MetadataId=)?({_GUID}))$")
PATH = re.compile(
    r"^(EntityDefinitions|RelationshipDefinitions)(?:\(([^)]*)\))?"
    r"(?:/(Attributes|ManyToOneRelationships|OneToManyRelationships|ManyToManyRelationships|Keys)"
    r"(?:\(([^)]*)\))?)?(?:/Microsoft\.Dynamics\.CRM\.([A-Za-z]+))?$"
)
"""Every metadata address the emulator answers (a GET on anything else under these roots is a 404)."""
_BASE_RELATIONSHIP = {k: RELATIONSHIP_PROPERTIES[k] for k in ("MetadataId", "SchemaName", "RelationshipType")}
_BASE_RELATIONSHIP["IsCustomRelationship"] = EdmType.BOOLEAN
_EMPTY_CHILDREN: dict[str, tuple[str, dict[str, EdmType | None]]] = {
    "ManyToManyRelationships": (
        "ManyToManyRelationshipMetadata",
        {**_BASE_RELATIONSHIP, "Entity1LogicalName": EdmType.STRING, "Entity2LogicalName": EdmType.STRING},
    ),
    "Keys": (
        "EntityKeyMetadata",
        {"MetadataId": EdmType.GUID, "LogicalName": EdmType.STRING, "SchemaName": EdmType.STRING},
    ),
}
"""Child collections the emulator's tables have no items in (no many-to-many, no alternate keys)."""


@dataclass(frozen=True)
class MetadataPath:
    """One parsed metadata address (see ``PATH``)."""

    root: str
    key: str
    child: str
    child_key: str
    cast: str


def kind_of(parts: tuple[str, ...]) -> str:
    """The request counter kind of a metadata address."""
    root, key, child = parts[0], parts[1], parts[2]
    if root == "RelationshipDefinitions":
        return "relationship" if key else "relationship_definitions"
    if child:
        return "entity_children"
    return "entity_definition" if key else "entity_definitions"


def _key(text: str, what: str) -> tuple[str, str]:
    """``(name kind, value)`` of a key: ``LogicalName``, ``SchemaName`` or ``MetadataId``."""
    match = _KEY.match(text)
    if match is None:
        raise bad_request(f"The key '{text}' of {what} is not a name in quotes or a MetadataId.")
    if match.group(3):
        return "MetadataId", match.group(3).lower()
    return match.group(1), match.group(2)


def answer(org: Organization, request: ApiRequest, parts: tuple[str, ...]) -> dict[str, Any]:
    """Answer a GET of a metadata address."""
    path = MetadataPath(*parts)
    if path.root == "RelationshipDefinitions":
        if path.child:
            raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{path.child}'.")
        return _relationships(org, request, path)
    if not path.key:
        if path.child or path.cast:
            raise bad_request("Address one table, by LogicalName or MetadataId, before its children.")
        return _entities(org, request)
    entity = _entity(org, path.key)
    if path.child == "Attributes":
        return _attributes(org, request, entity, path)
    if path.cast:
        raise bad_request(unknown_type(path.cast).message)
    if path.child:
        return _relationship_children(org, request, entity, path.child, path.child_key)
    check_options(request, {"$select"})
    body = single(entity.to_json(), request, ENTITY_PROPERTIES, "EntityMetadata")
    return {"@odata.context": f"{request.base_url}$metadata#EntityDefinitions/$entity", **body}


def _entity(org: Organization, key: str) -> Entity:
    name, value = _key(key, "EntityDefinitions")
    if name == "SchemaName":
        raise bad_request("EntityDefinitions are addressed by LogicalName or MetadataId.")
    for entity in org.catalog.entities.values():
        if (entity.logical_name if name == "LogicalName" else entity.metadata_id) == value:
            return entity
    if name == "LogicalName":
        raise entity_not_found(value)
    raise ApiError(
        404, "0x80041102", f"The entity with a MetadataId = '{value}' was not found in the MetadataCache."
    )


def _collection(
    request: ApiRequest, records: list[dict[str, Any]], declared: dict[str, EdmType | None], type_name: str
) -> list[dict[str, Any]]:
    """``$select`` and ``$filter`` over a metadata collection, checked against the declared type."""
    names = selected(request, declared, type_name)
    if request.query.get("$filter"):
        records = filtered(records, request.query["$filter"], declared, type_name)
    return [project(r, names) for r in records]


def _entities(org: Organization, request: ApiRequest) -> dict[str, Any]:
    """``GET EntityDefinitions`` with ``$select``/``$filter`` (Query metadata using the Web API)."""
    check_options(request, {"$select", "$filter"})
    records = [e.to_json() for e in org.catalog.entities.values()]
    value = _collection(request, records, ENTITY_PROPERTIES, "EntityMetadata")
    return {"@odata.context": f"{request.base_url}$metadata#EntityDefinitions", "value": value}


def _attribute_record(entity: Entity, attribute: Attribute) -> dict[str, Any]:
    """An attribute with the properties of its own (derived) type; option sets come with ``$expand``."""
    return {**attribute_json(entity, attribute), **derived_json(entity, attribute)}


def _attributes(org: Organization, request: ApiRequest, entity: Entity, path: MetadataPath) -> dict[str, Any]:
    """A table's ``Attributes``, one of them, or those of a cast type, with option sets expanded."""
    now, strong = org.clock.now(), is_strong(request)
    cast = path.cast or None
    declared = cast_properties(cast)
    wanted = parse_expand(request.query.get("$expand"), cast)
    type_name = cast or "AttributeMetadata"
    context = f"{request.base_url}$metadata#EntityDefinitions('{entity.logical_name}')/Attributes"
    if cast:
        context += f"/{NAMESPACE}{cast}"
    visible = [
        a for a in entity.attributes.values() if org.catalog.attribute(entity, a.logical_name, now, strong)
    ]
    if path.child_key:
        attribute = _one_attribute(entity, visible, path.child_key, cast)
        check_options(request, {"$select", "$expand"})
        body = single(_attribute_record(entity, attribute), request, declared, type_name)
        return {"@odata.context": f"{context}/$entity", **body, **expanded(entity, attribute, wanted)}
    check_options(request, {"$select", "$filter", "$expand"})
    records = [_attribute_record(entity, a) for a in visible if cast is None or is_of(a, cast)]
    if request.query.get("$filter"):
        records = filtered(records, request.query["$filter"], declared, type_name)
    names = selected(request, declared, type_name)
    items = [
        {**project(r, names), **expanded(entity, entity.attributes[r["LogicalName"]], wanted)}
        for r in records
    ]
    return {"@odata.context": context, "value": items}


def _one_attribute(entity: Entity, visible: list[Attribute], key: str, cast: str | None) -> Attribute:
    """The attribute a key names (by LogicalName or MetadataId), if visible and of the cast type."""
    name, value = _key(key, "Attributes")
    found = [a for a in visible if _attribute_key(entity, a, name) == value.lower()]
    if not found or (cast and not is_of(found[0], cast)):
        raise ApiError(
            404,
            "0x80041103",
            f"'{entity.logical_name}' entity doesn't contain attribute with Name = '{value}' and "
            "NameMapping = 'Logical'.",
        )
    return found[0]


def _attribute_key(entity: Entity, attribute: Attribute, name: str) -> str:
    if name == "MetadataId":
        return str(attribute_json(entity, attribute)["MetadataId"])
    return attribute.logical_name


def _relationship_children(
    org: Organization, request: ApiRequest, entity: Entity, child: str, child_key: str
) -> dict[str, Any]:
    """``ManyToOneRelationships``, ``OneToManyRelationships`` (and the empty many-to-many and keys)."""
    if child_key:
        raise bad_request(f"Address a relationship through RelationshipDefinitions, not {child}(...).")
    check_options(request, {"$select", "$filter"})
    context = f"{request.base_url}$metadata#EntityDefinitions('{entity.logical_name}')/{child}"
    if child in _EMPTY_CHILDREN:
        type_name, declared = _EMPTY_CHILDREN[child]
        return {"@odata.context": context, "value": _collection(request, [], declared, type_name)}
    now, strong = org.clock.now(), is_strong(request)
    side = "referencing_entity" if child == "ManyToOneRelationships" else "referenced_entity"
    chosen = [
        r.to_json()
        for r in org.catalog.relationships.values()
        if getattr(r, side) == entity.logical_name and (strong or r.visible_at <= now)
    ]
    value = _collection(request, chosen, RELATIONSHIP_PROPERTIES, "OneToManyRelationshipMetadata")
    return {"@odata.context": context, "value": value}


def _relationships(org: Organization, request: ApiRequest, path: MetadataPath) -> dict[str, Any]:
    """``RelationshipDefinitions``: the collection (cast or not) or one relationship by key."""
    now, strong = org.clock.now(), is_strong(request)
    cast = path.cast or None
    if cast not in (
        None,
        "RelationshipMetadataBase",
        "OneToManyRelationshipMetadata",
        "ManyToManyRelationshipMetadata",
    ):
        raise bad_request(unknown_type(cast).message)
    visible = [r for r in org.catalog.relationships.values() if strong or r.visible_at <= now]
    context = f"{request.base_url}$metadata#RelationshipDefinitions"
    if path.key:
        check_options(request, {"$select"})
        rel = _relationship(visible, path.key)
        if cast == "ManyToManyRelationshipMetadata":
            raise _relationship_missing("MetadataId", rel.metadata_id)
        body = single(rel.to_json(), request, ("MetadataId", "SchemaName"), "RelationshipMetadataBase")
        return {"@odata.context": f"{context}/$entity", **body}
    check_options(request, {"$select", "$filter"})
    if cast == "ManyToManyRelationshipMetadata":
        type_name, declared = _EMPTY_CHILDREN["ManyToManyRelationships"]
        return {
            "@odata.context": f"{context}/{NAMESPACE}{cast}",
            "value": _collection(request, [], declared, type_name),
        }
    declared = RELATIONSHIP_PROPERTIES if cast == "OneToManyRelationshipMetadata" else _BASE_RELATIONSHIP
    value = _collection(request, [r.to_json() for r in visible], declared, cast or "RelationshipMetadataBase")
    return {"@odata.context": context + (f"/{NAMESPACE}{cast}" if cast else ""), "value": value}


def _relationship(visible: list[Relationship], key: str) -> Relationship:
    name, value = _key(key, "RelationshipDefinitions")
    if name == "LogicalName":
        raise bad_request("RelationshipDefinitions are addressed by SchemaName or MetadataId.")
    for rel in visible:
        if (rel.schema_name.lower() == value.lower()) if name == "SchemaName" else rel.metadata_id == value:
            return rel
    raise _relationship_missing(name, value)


def _relationship_missing(name: str, value: str) -> ApiError:
    return ApiError(404, "0x80040217", f"Could not find a relationship with {name} = '{value}'.")
