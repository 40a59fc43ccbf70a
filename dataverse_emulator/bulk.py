"""The bulk messages: ``CreateMultiple``, ``UpdateMultiple`` and ``UpsertMultiple`` on a table.

Each is all-or-nothing (the standard-table rule) and each is refused on a table the
``update_multiple`` mode does not list, as a table without the message's ``sdkmessagefilter``
(Microsoft Learn: Bulk operation messages; Use CreateMultiple, UpdateMultiple, UpsertMultiple).
``CreateMultiple`` answers the new rows' ``Ids``; ``UpsertMultiple`` answers ``Ids`` in target order.
"""

from __future__ import annotations

import secrets
from typing import Any

from .addressing import RowKey, parse_bind, parse_key
from .errors import UNSUPPORTED_MESSAGE, ApiError, bad_request, not_found
from .organization import Organization
from .schema import Entity
from .values import new_guid
from .writes import check_type, write_row


def _targets(org: Organization, entity: Entity, message: str, body: Any) -> list[dict[str, Any]]:
    """The ``Targets`` of a bulk message, each an object with this table's ``@odata.type``."""
    if not org.modes.update_multiple.get(entity.logical_name, False):
        raise bad_request(
            f"{message} is not enabled on the entity {entity.logical_name}", UNSUPPORTED_MESSAGE
        )
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets:
        raise bad_request(f"{message} requires a non-empty 'Targets' collection.")
    for index, target in enumerate(targets):
        if not isinstance(target, dict) or "@odata.type" not in target:
            raise bad_request(f"Targets[{index}] must be an object with '@odata.type'.")
        check_type(entity, target["@odata.type"])
    return targets


def _required_key(entity: Entity, target: dict[str, Any], index: int) -> RowKey:
    """A target's key, which UpdateMultiple and UpsertMultiple need."""
    key = _key_of(entity, target, index, required=True)
    if key is None:
        raise bad_request(f"Targets[{index}] must contain the primary key '{entity.primary_id}'.")
    return key


def _key_of(entity: Entity, target: dict[str, Any], index: int, *, required: bool) -> RowKey | None:
    """A target's key: its ``@odata.id`` or its primary key column (with ``partitionid`` if elastic)."""
    if isinstance(target.get("@odata.id"), str):
        entity_set, text = parse_bind(target["@odata.id"])
        if entity_set != entity.entity_set:
            raise bad_request(f"Targets[{index}] '@odata.id' names another table: {target['@odata.id']}.")
        return parse_key(entity, text)
    raw = target.get(entity.primary_id)
    if raw is None and not required:
        return None
    if not isinstance(raw, str):
        raise bad_request(f"Targets[{index}] must contain the primary key '{entity.primary_id}'.")
    pid = target.get("partitionid") if entity.elastic else None
    if isinstance(pid, str):
        return parse_key(
            entity, f"{entity.primary_id}={raw},partitionid='{pid.replace(chr(39), chr(39) * 2)}'"
        )
    return parse_key(entity, raw)


def _payload(target: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k != "@odata.id"}


def create_multiple(org: Organization, entity: Entity, body: Any, user: str) -> list[str]:
    """``CreateMultiple``: every target is a new row (an existing key fails the whole request)."""
    targets = _targets(org, entity, "CreateMultiple", body)
    ids: list[str] = []
    with org.store.transaction():
        for index, target in enumerate(targets):
            key = _key_of(entity, target, index, required=False) or RowKey(new_guid(secrets.randbits(128)))
            write_row(org, entity, key, _payload(target), user, create_only=True)
            ids.append(key.id)
        org.stats.written(entity.logical_name, len(ids), user)
    return ids


def update_multiple(org: Organization, entity: Entity, body: Any, user: str) -> int:
    """``UpdateMultiple``: all-or-nothing; the first target with a given key wins. Returns rows written."""
    targets = _targets(org, entity, "UpdateMultiple", body)
    seen: set[str] = set()
    with org.store.transaction():
        for index, target in enumerate(targets):
            key = _required_key(entity, target, index)
            if key.id in seen:
                continue
            seen.add(key.id)
            try:
                write_row(org, entity, key, _payload(target), user, if_match="*")
            except ApiError as exc:
                if exc.message == not_found(entity.logical_name, key.id).message:
                    # UpdateMultiple words a missing target in the plural (PA-docs bulk-operations).
                    exc.message = f"{entity.logical_name.capitalize()} With Ids = {key.id} Do Not Exist"
                raise
        org.stats.written(entity.logical_name, len(seen), user)
    return len(seen)


def upsert_multiple(org: Organization, entity: Entity, body: Any, user: str) -> list[str]:
    """``UpsertMultiple``: each target updates its row, or creates it when the key names none."""
    targets = _targets(org, entity, "UpsertMultiple", body)
    ids: list[str] = []
    with org.store.transaction():
        for index, target in enumerate(targets):
            key = _required_key(entity, target, index)
            write_row(org, entity, key, _payload(target), user)
            ids.append(key.id)
        org.stats.written(entity.logical_name, len(ids), user)
    return ids
