"""Associating and disassociating rows through ``$ref``, in both directions of a one-to-many relationship.

A one-to-many relationship is one lookup on the child (the many side) seen from two ends: the child's
single-valued navigation property (the lookup's) and the parent's collection-valued one (Dataverse
names it after the relationship's schema name). Every form changes the same lookup:

- ``PUT <child set>(<id>)/<lookup nav>/$ref`` ``{"@odata.id": "<parent url>"}`` sets it;
- ``DELETE <child set>(<id>)/<lookup nav>/$ref`` clears it;
- ``POST <parent set>(<id>)/<collection nav>/$ref`` ``{"@odata.id": "<child url>"}`` sets the child's;
- ``DELETE <parent set>(<id>)/<collection nav>(<child id>)/$ref`` or ``…/$ref?$id=<child url>``
  clears the child's, when it names this parent.
"""

from __future__ import annotations

from typing import Any

from .addressing import RowKey, parse_bind, parse_key
from .errors import ApiError, bad_request
from .exchange import ApiRequest
from .organization import Organization
from .query import find_row
from .schema import Entity, Relationship
from .writes import write_row


def _segment_missing(name: str) -> ApiError:
    return ApiError(400, "0x8006088a", f"Resource not found for the segment '{name}'.")


def collection_navigation(org: Organization, entity: Entity, name: str) -> Relationship | None:
    """The visible one-to-many relationship whose collection-valued navigation property is ``name``."""
    now = org.clock.now()
    for rel in org.catalog.relationships.values():
        if rel.referenced_entity == entity.logical_name and rel.schema_name == name and rel.visible_at <= now:
            return rel
    return None


def _reference(request: ApiRequest) -> str:
    """The ``@odata.id`` of a ``$ref`` body, the URL of the row to reference."""
    body: Any = request.json()
    value = body.get("@odata.id") if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise bad_request("A $ref request body must be an object with an '@odata.id' naming a row.")
    return value


def _row_named(org: Organization, url: str, expected: str) -> tuple[Entity, RowKey]:
    """The table and key a reference URL names; it must be a row of ``expected``."""
    entity_set, key_text = parse_bind(url)
    entity = org.catalog.by_set(entity_set)
    if entity is None or entity.logical_name != expected:
        raise bad_request(f"The reference '{url}' does not name a row of '{expected}'.")
    return entity, parse_key(entity, key_text)


def associate(org: Organization, entity: Entity, key: RowKey, nav: str, request: ApiRequest) -> None:
    """``PUT …/<lookup nav>/$ref`` or ``POST …/<collection nav>/$ref``."""
    url = _reference(request)
    if request.method == "PUT":
        rel = org.catalog.navigation(entity, nav, org.clock.now())
        if rel is None:
            raise _segment_missing(nav)
        _bind(org, entity, key, rel, url, request.user)
        return
    parent = collection_navigation(org, entity, nav)
    if parent is None:
        raise _segment_missing(nav)
    find_row(org, entity, key, request.user, org.clock.now())
    child, child_key = _row_named(org, url, parent.referencing_entity)
    parent_url = f"{entity.entity_set}({_key_text(entity, key)})"
    _bind(org, child, child_key, parent, parent_url, request.user)


def _key_text(entity: Entity, key: RowKey) -> str:
    if key.partition_id is None:
        return key.id
    literal = key.partition_id.replace("'", "''")
    return f"{entity.primary_id}={key.id},partitionid='{literal}'"


def _bind(org: Organization, child: Entity, key: RowKey, rel: Relationship, url: str, user: str) -> None:
    with org.store.transaction():
        find_row(org, child, key, user, org.clock.now())
        write_row(org, child, key, {f"{rel.navigation_property}@odata.bind": url}, user, if_match="*")
        org.stats.written(child.logical_name, 1, user)


def disassociate(
    org: Organization, entity: Entity, key: RowKey, nav: str, child_key: str, request: ApiRequest
) -> None:
    """``DELETE …/<nav>/$ref``, ``…/<collection nav>(<id>)/$ref`` or ``…/<collection nav>/$ref?$id=``."""
    now = org.clock.now()
    single = org.catalog.navigation(entity, nav, now)
    if single is not None and not child_key and "$id" not in request.query:
        _clear(org, entity, key, single, request.user)
        return
    parent = collection_navigation(org, entity, nav)
    if parent is None:
        raise _segment_missing(nav)
    find_row(org, entity, key, request.user, now)
    child = org.entity(parent.referencing_entity)
    if child_key:
        target = parse_key(child, child_key)
    elif "$id" in request.query:
        child, target = _row_named(org, request.query["$id"], parent.referencing_entity)
    else:
        raise bad_request("Name the row to disassociate: …/<navigation property>(<id>)/$ref or $id=<url>.")
    row = find_row(org, child, target, request.user, now)
    if row[parent.referencing_attribute] == key.id:
        _clear(org, child, target, parent, request.user)


def _clear(org: Organization, entity: Entity, key: RowKey, rel: Relationship, user: str) -> None:
    with org.store.transaction():
        find_row(org, entity, key, user, org.clock.now())
        write_row(org, entity, key, {rel.navigation_property: None}, user, if_match="*")
        org.stats.written(entity.logical_name, 1, user)
