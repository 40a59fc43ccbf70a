"""The derived metadata types a query may cast to, what each adds, and ``$expand`` of option sets.

OData lets a query name a derived type's properties only through a type-cast segment
(``Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata``); the cast also narrows a
collection to the items of that type, so a table without picklists answers an empty ``value``.
Option sets are navigation properties of the enumeration types and come only with ``$expand``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import bad_request
from .odata_filter import QueryError, parse_select
from .schema import ATTRIBUTE_PROPERTIES, Attribute, AttributeType, Entity, label, metadata_id
from .values import EdmType

NAMESPACE = "Microsoft.Dynamics.CRM."
_ENUM_FAMILY = ("EnumAttributeMetadata", "PicklistAttributeMetadata", "StateAttributeMetadata")
ATTRIBUTE_CASTS: dict[str, dict[str, EdmType | None]] = {
    "AttributeMetadata": {},
    "LookupAttributeMetadata": {"Targets": None},
    "StringAttributeMetadata": {"MaxLength": EdmType.INT32},
    "MemoAttributeMetadata": {"MaxLength": EdmType.INT32},
    "EnumAttributeMetadata": {"DefaultFormValue": EdmType.INT32},
    "PicklistAttributeMetadata": {"DefaultFormValue": EdmType.INT32},
    "StateAttributeMetadata": {"DefaultFormValue": EdmType.INT32},
    "StatusAttributeMetadata": {"DefaultFormValue": EdmType.INT32},
    "MultiSelectPicklistAttributeMetadata": {"DefaultFormValue": EdmType.INT32},
    "BooleanAttributeMetadata": {"DefaultValue": EdmType.BOOLEAN},
    "DateTimeAttributeMetadata": {"Format": EdmType.STRING},
    "IntegerAttributeMetadata": {"MinValue": EdmType.INT32, "MaxValue": EdmType.INT32},
    "BigIntAttributeMetadata": {"MinValue": EdmType.INT64, "MaxValue": EdmType.INT64},
    "DecimalAttributeMetadata": {"Precision": EdmType.INT32},
    "DoubleAttributeMetadata": {"Precision": EdmType.INT32},
    "MoneyAttributeMetadata": {"Precision": EdmType.INT32},
    "UniqueIdentifierAttributeMetadata": {},
    "ImageAttributeMetadata": {},
    "FileAttributeMetadata": {},
    "EntityNameAttributeMetadata": {},
}
"""Every attribute metadata type of the Web API, with the derived properties the emulator answers."""
_EXPANDABLE = frozenset({"OptionSet", "GlobalOptionSet"})
_OPTION_SET_PROPERTIES = frozenset({"MetadataId", "Name", "OptionSetType", "IsGlobal", "Options"})
_STATE_OPTIONS = ((0, "Active", 1), (1, "Inactive", 2))
_EXPAND = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*\$select=([A-Za-z0-9_,\s]*)\))?\s*$")


def unknown_type(name: str) -> QueryError:
    """A cast to a type the Web API does not have."""
    return QueryError(f"The type '{NAMESPACE}{name}' is not a known type of the metadata model.")


def type_of(attribute: Attribute) -> str:
    """The attribute's metadata type name without namespace or ``#``."""
    return attribute.type.metadata_type.removeprefix(f"#{NAMESPACE}")


def is_of(attribute: Attribute, cast: str) -> bool:
    """Whether the attribute is an instance of the cast type (the base and enum types included)."""
    own = type_of(attribute)
    if cast == "AttributeMetadata" or cast == own:
        return True
    return cast == "EnumAttributeMetadata" and own in _ENUM_FAMILY


def cast_properties(cast: str | None) -> dict[str, EdmType | None]:
    """The properties a query may name on attributes seen as ``cast``."""
    if cast is None:
        return dict(ATTRIBUTE_PROPERTIES)
    if cast not in ATTRIBUTE_CASTS:
        raise bad_request(unknown_type(cast).message)
    return {**ATTRIBUTE_PROPERTIES, **ATTRIBUTE_CASTS[cast]}


def derived_json(entity: Entity, attribute: Attribute) -> dict[str, Any]:
    """The derived-type properties of an attribute (beyond ``schema.attribute_json``)."""
    kind = attribute.type
    if kind in (AttributeType.STRING, AttributeType.MEMO):
        return {"MaxLength": 4000 if kind is AttributeType.MEMO else 100}
    if kind is AttributeType.STATE:
        return {"DefaultFormValue": -1}
    if kind is AttributeType.DATETIME:
        return {"Format": "DateAndTime"}
    if kind is AttributeType.INTEGER:
        return {"MinValue": -(2**31), "MaxValue": 2**31 - 1}
    if kind is AttributeType.BIGINT:
        return {"MinValue": -(2**63), "MaxValue": 2**63 - 1}
    if kind is AttributeType.BOOLEAN:
        return {"DefaultValue": False}
    return {}


def _option_set(entity: Entity, attribute: Attribute) -> dict[str, Any] | None:
    """The local option set of a state column (the only enumeration the emulator's tables have)."""
    if attribute.type is not AttributeType.STATE:
        return None
    options = [
        {
            "@odata.type": f"#{NAMESPACE}StateOptionMetadata",
            "Value": value,
            "Label": label(name),
            "InvariantName": name,
            "DefaultStatus": status,
        }
        for value, name, status in _STATE_OPTIONS
    ]
    return {
        "@odata.type": f"#{NAMESPACE}OptionSetMetadata",
        "MetadataId": metadata_id("optionset", entity.logical_name, attribute.logical_name),
        "Name": f"{entity.logical_name}_{attribute.logical_name}",
        "OptionSetType": "State",
        "IsGlobal": False,
        "Options": options,
    }


def parse_expand(text: str | None, cast: str | None) -> dict[str, list[str] | None]:
    """``$expand`` of option sets: navigation name → its ``$select`` (``None``: every property)."""
    if not text:
        return {}
    wanted: dict[str, list[str] | None] = {}
    for part in re.split(r",(?![^(]*\))", text):
        match = _EXPAND.match(part)
        if match is None:
            raise bad_request(f"The $expand option '{part.strip()}' is not supported on metadata.")
        name, select = match.group(1), match.group(2)
        if name not in _EXPANDABLE or cast not in (*_ENUM_FAMILY, "StatusAttributeMetadata"):
            on = cast or "AttributeMetadata"
            raise bad_request(f"Could not find a property named '{name}' on type '{NAMESPACE}{on}'.")
        try:
            names = parse_select(select) if select else None
        except QueryError as exc:
            raise bad_request(exc.message, exc.code) from exc
        for unknown in sorted(set(names or ()) - _OPTION_SET_PROPERTIES):
            raise bad_request(
                f"Could not find a property named '{unknown}' on type '{NAMESPACE}OptionSetMetadata'."
            )
        wanted[name] = names
    return wanted


def expanded(entity: Entity, attribute: Attribute, wanted: Mapping[str, list[str] | None]) -> dict[str, Any]:
    """The expanded option sets of one attribute (``GlobalOptionSet`` is null: none is global)."""
    found: dict[str, Any] = {}
    for name, select in wanted.items():
        record = _option_set(entity, attribute) if name == "OptionSet" else None
        if record is not None and select is not None:
            record = {k: v for k, v in record.items() if k in select or k in ("@odata.type", "MetadataId")}
        found[name] = record
    return found
