"""Rows between their stored form and their JSON form, in both directions.

Answers render stored values as the Web API shows them (lookups as ``_<name>_value``, date-times in the
precision mode, an ``@odata.etag`` from the row version); writes convert JSON values into stored ones
with the type checks Dataverse applies, answering 400 for a value of the wrong type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import bad_request
from .schema import Attribute, AttributeType, Entity
from .store import VERSION
from .values import Precision, format_datetime, normalize_guid, parse_datetime

PROFILE_ENTITY = "msdynci_customerprofile"
ROW_VERSION_COLUMN = "versionnumber"
"""The column Dataverse fills with the row version (the number inside ``@odata.etag``)."""


def etag(version: int) -> str:
    """The weak ETag of a row version, as Dataverse writes it."""
    return f'W/"{version}"'


def stored_column(attribute: Attribute) -> str:
    """The store column that answers ``attribute``: ``versionnumber`` is the row version itself."""
    return VERSION if attribute.logical_name == ROW_VERSION_COLUMN else attribute.logical_name


def render(
    entity: Entity,
    row: Mapping[str, Any],
    attributes: Iterable[Attribute],
    precision: Precision,
    *,
    navigation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One row as JSON; ``navigation`` (lookup → nav property) adds lookup annotations when asked.

    Annotations come before the value they describe, in the order Dataverse writes them.
    """
    body: dict[str, Any] = {"@odata.etag": etag(int(row[VERSION]))}
    for attribute in attributes:
        value = row[stored_column(attribute)]
        name = attribute.query_name
        if navigation is not None and attribute.type is AttributeType.LOOKUP and value is not None:
            body[f"{name}@Microsoft.Dynamics.CRM.associatednavigationproperty"] = navigation.get(
                attribute.logical_name, attribute.schema_name
            )
            body[f"{name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = attribute.targets[0]
        body[name] = to_json_value(attribute, value, precision)
    return body


def to_json_value(attribute: Attribute, value: Any, precision: Precision) -> Any:
    """A stored value as JSON."""
    if value is None:
        return None
    if attribute.type is AttributeType.DATETIME:
        return format_datetime(int(value), precision)
    if attribute.type is AttributeType.BOOLEAN:
        return bool(value)
    return value


def from_json_value(entity: Entity, attribute: Attribute, value: Any) -> Any:
    """A JSON value to store in ``attribute``, or a 400 that names the expected type."""
    if value is None:
        return None
    kind = attribute.type
    expected = kind.edm.value
    ok = True
    stored: Any = value
    if kind in (AttributeType.STRING, AttributeType.MEMO):
        ok = isinstance(value, str)
    elif kind in (AttributeType.INTEGER, AttributeType.STATE, AttributeType.BIGINT):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is AttributeType.BOOLEAN:
        ok = isinstance(value, bool)
        stored = int(value) if ok else None
    elif kind is AttributeType.DATETIME:
        try:
            stored = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            stored = None
        ok = stored is not None
    elif kind in (AttributeType.UNIQUEIDENTIFIER, AttributeType.LOOKUP):
        try:
            stored = normalize_guid(value) if isinstance(value, str) else None
        except ValueError:
            stored = None
        ok = stored is not None
    if not ok:
        raise bad_request(
            f"Cannot convert the literal '{value}' to the expected type '{expected}' of property "
            f"'{attribute.logical_name}' on type 'Microsoft.Dynamics.CRM.{entity.logical_name}'."
        )
    return stored
