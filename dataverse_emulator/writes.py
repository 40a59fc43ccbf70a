"""Writes of one row: PATCH (update or upsert), create and delete (bulk messages are in ``bulk``).

Every write sets ``modifiedon`` on server time and gives the row a new version. Lookups are written
through ``<navprop>@odata.bind`` with the navigation property's exact case, and cleared through
``DELETE .../<navprop>/$ref`` or ``"<navprop>": null``; ``"<navprop>@odata.bind": null`` behaves as
the ``bind_null`` mode says, since public reports disagree.
"""

from __future__ import annotations

from typing import Any

from .addressing import RowKey, parse_bind, parse_key
from .errors import (
    BAD_REQUEST,
    DUPLICATE_RECORD,
    SERVER_ERROR,
    VERSION_MISMATCH,
    ApiError,
    bad_request,
    not_found,
)
from .organization import Organization
from .rows import etag, from_json_value
from .schema import AttributeType, Entity, Relationship
from .store import VERSION
from .values import store_datetime

IGNORED_ON_WRITE = frozenset({"createdon", "modifiedon", "versionnumber"})
BIND = "@odata.bind"


def _invalid_property(entity: Entity, name: str) -> ApiError:
    return bad_request(
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property "
        f"'{name}' was found in entity 'Microsoft.Dynamics.CRM.{entity.logical_name}'.",
        BAD_REQUEST,
    )


def _undeclared(entity: Entity, name: str) -> ApiError:
    return bad_request(
        f"Error identified in Payload provided by the user for Entity :'{entity.entity_set}'  ---->  "
        f"InnerException : Microsoft.OData.ODataException: An undeclared property '{name}' which only has "
        "property annotations in the payload but no property value was found in the payload. In OData, only "
        "declared navigation properties and declared named streams can be represented as properties without "
        "values.",
        BAD_REQUEST,
    )


def check_type(entity: Entity, value: object) -> None:
    """A payload's ``@odata.type``, when given, must name this table."""
    if not isinstance(value, str) or value.lstrip("#") != f"Microsoft.Dynamics.CRM.{entity.logical_name}":
        raise bad_request(
            f"The '@odata.type' '{value}' does not match the type "
            f"'Microsoft.Dynamics.CRM.{entity.logical_name}' "
            "expected by the request."
        )


def resolve_bind(
    org: Organization, rel: Relationship, value: object, user: str, now: int
) -> tuple[str, str | None]:
    """The (id, partition id) a bind names, after checking the row exists as the mode says it must."""
    entity_set, key_text = parse_bind(value)
    target = org.catalog.by_set(entity_set)
    if target is None or target.logical_name != rel.referenced_entity:
        raise bad_request(
            f"The 'odata.bind' value '{value}' names the entity set '{entity_set}', "
            "but the navigation property "
            f"'{rel.navigation_property}' refers to '{rel.referenced_entity}'."
        )
    key = parse_key(target, key_text)
    row = org.store.get(target, key.id)
    if row is not None and target.elastic and not (row["_visible_at"] <= now or row["_writer"] == user):
        row = None
    if row is None:
        raise not_found(target.logical_name, key.id)
    stored = row["partitionid"] if target.elastic else None
    if key.partition_id is not None:
        if stored != key.partition_id:
            raise not_found(target.logical_name, key.id)
        return key.id, stored
    if stored is None:
        return key.id, None
    if org.modes.bind_without_partition == "resolve":
        return key.id, stored
    if org.modes.bind_without_partition == "dangling":
        return key.id, None
    raise not_found(target.logical_name, key.id)


def payload_changes(
    org: Organization, entity: Entity, payload: Any, key: RowKey, user: str
) -> dict[str, Any]:
    """The stored column values a JSON payload sets, validated as Dataverse validates them."""
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.", BAD_REQUEST)
    now = org.clock.now()
    changes: dict[str, Any] = {}
    for name, value in payload.items():
        if name == "@odata.type":
            check_type(entity, value)
        elif name.endswith(BIND):
            changes.update(_bind(org, entity, name[: -len(BIND)], value, user, now))
        elif name.startswith("@") or "@" in name:
            continue
        elif (rel := org.catalog.navigation(entity, name, now)) is not None:
            if value is not None:
                raise bad_request(
                    f"Deep insert through '{name}' is not supported: bind an existing row instead."
                )
            changes[rel.referencing_attribute] = None
            if f"{rel.referencing_attribute}pid" in entity.attributes:
                changes[f"{rel.referencing_attribute}pid"] = None
        else:
            attribute = org.catalog.attribute(entity, name, now, False) if name == name.lower() else None
            if attribute is None or attribute.type is AttributeType.LOOKUP:
                raise _invalid_property(entity, name)
            if name in IGNORED_ON_WRITE:
                continue
            stored = from_json_value(entity, attribute, value)
            if name == entity.primary_id and stored != key.id:
                raise bad_request(f"The value of '{name}' in the body does not match the key in the URL.")
            if name == "partitionid" and entity.elastic and stored != key.partition_id:
                raise bad_request(
                    "partitionid is set when a row is created, through the key; it cannot change."
                )
            changes[name] = stored
    return changes


def _bind(org: Organization, entity: Entity, nav: str, value: object, user: str, now: int) -> dict[str, Any]:
    rel = org.catalog.navigation(entity, nav, now)
    if rel is None:
        raise _undeclared(entity, nav)
    if value is None:
        if org.modes.bind_null == "refused":
            raise bad_request(
                "An error occurred while validating input parameters: Microsoft.OData.ODataException: The "
                "'odata.bind' instance or property annotation has a null value. In OData, the 'odata.bind' "
                "instance or property annotation must have a non-null string value."
            )
        if org.modes.bind_null == "server_error":
            raise ApiError(500, SERVER_ERROR, "An unexpected error occurred.")
        return {}
    target_id, pid = resolve_bind(org, rel, value, user, now)
    changes: dict[str, Any] = {rel.referencing_attribute: target_id}
    if f"{rel.referencing_attribute}pid" in entity.attributes:
        changes[f"{rel.referencing_attribute}pid"] = pid
    return changes


def _compose_fullname(entity: Entity, existing: Any, changes: dict[str, Any]) -> None:
    """Dataverse composes a contact's or lead's ``fullname`` from its first and last names.

    The organization's default format is "First Name Last Name" (Microsoft Learn: System Settings,
    General tab, "Set the full-name format"); a write that changes neither name leaves it alone.
    """
    if "fullname" not in entity.attributes or not {"firstname", "lastname"} & changes.keys():
        return
    names = [
        changes[n] if n in changes else (existing[n] if existing else None) for n in ("firstname", "lastname")
    ]
    changes["fullname"] = " ".join(n for n in names if n) or None


def write_row(
    org: Organization,
    entity: Entity,
    key: RowKey,
    payload: Any,
    user: str,
    *,
    if_match: str | None = None,
    if_none_match: str | None = None,
    create_only: bool = False,
) -> bool:
    """Update, upsert or create one row; return whether it was created (the caller counts the write)."""
    with org.store.transaction():
        existing = org.store.get(entity, key.id)
        if existing is None and (if_match is not None):
            raise not_found(entity.logical_name, key.id)
        if existing is not None and if_match not in (None, "*") and if_match != etag(int(existing[VERSION])):
            raise ApiError(
                412,
                VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            )
        if existing is not None and (if_none_match == "*" or create_only):
            raise ApiError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
        changes = payload_changes(org, entity, payload, key, user)
        _compose_fullname(entity, existing, changes)
        now = org.clock.now()
        stamp = store_datetime(now, org.modes.precision)
        visible_at = org.visible_at(entity, now)
        if existing is None:
            row = {
                entity.primary_id: key.id,
                "createdon": stamp,
                "modifiedon": stamp,
                "statecode": 0,
                **changes,
            }
            if entity.elastic:
                row["partitionid"] = key.partition_id
            org.store.insert(entity, row, writer=user, visible_at=visible_at)
        else:
            org.store.update(
                entity, key.id, {**changes, "modifiedon": stamp}, writer=user, visible_at=visible_at
            )
    return existing is None


def delete_row(org: Organization, entity: Entity, key: RowKey, user: str) -> None:
    """``DELETE <set>(<id>)``, counted under the store lock so a change set's rollback sees settled counts."""
    with org.store.transaction():
        if not org.store.delete(entity, key.id):
            raise not_found(entity.logical_name, key.id)
        org.stats.written(entity.logical_name, 1, user)
