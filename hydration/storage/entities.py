"""Table Storage entities: validation and encoding shared by the Azure adapter and the in-memory fake.

Both ``StateTables`` implementations validate and encode through these functions, so a value the fake
accepts is one the service accepts, and reads come back in the same shape.

Value convention (what goes in, what comes back):

- ``str`` (at most 64 KiB as UTF-16, the service's limit), ``bool``, ``float`` (finite), ``int`` (Int32
  on the wire when it fits, Int64 otherwise; beyond Int64 is refused), timezone-aware ``datetime``
  (stored in UTC, read back as a plain aware UTC ``datetime`` with microsecond precision).
- ``None`` is not stored: the property is omitted, and a missing property reads as absent, so callers
  use ``entity.get(name)``.
- ``dict`` and ``list`` are stored as compact JSON in a string property named ``<name>__json`` and read
  back under ``<name>``. Property names are ASCII identifiers (``[A-Za-z_][A-Za-z0-9_]*``), may not end
  in ``__json``, and may not be ``PartitionKey``, ``RowKey``, ``Timestamp`` or ``etag``.

Row keys are ordered as Table Storage orders them: by UTF-16 code units.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hydration.storage.errors import InvalidStorageKeyError, StorageError

JSON_SUFFIX = "__json"
MAX_STRING_UNITS = 32 * 1024  # 64 KiB of UTF-16
MAX_KEY_UNITS = 512  # 1 KiB of UTF-16
MAX_PROPERTIES = 252  # 255 minus PartitionKey, RowKey and Timestamp
MAX_ENTITY_BYTES = 1024 * 1024
INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)
_MIN_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)  # Edm.DateTime starts here
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_RESERVED_NAMES = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag"})

Scalar = bool | int | float | str | datetime
Stored = dict[str, Scalar]
"""An entity's properties as stored: validated scalars, JSON already encoded; the fake keeps these."""


def validate_table_name(name: str) -> str:
    """The name if Table Storage accepts it (3-63 alphanumerics starting with a letter), else ValueError."""
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name) or name.lower() == "tables":
        raise ValueError(f"invalid table name {name!r}: 3-63 letters and digits, starting with a letter")
    return name


def validate_key(key: str, which: str = "key") -> str:
    """The key if Table Storage accepts it as a PartitionKey or RowKey, else ``InvalidStorageKeyError``."""
    if not isinstance(key, str):
        raise TypeError(f"{which} must be a str, not {type(key).__name__}")
    if _FORBIDDEN_KEY_CHARS.search(key):
        raise InvalidStorageKeyError(
            f"{which} contains a character Table Storage forbids (/ \\ # ? or control)"
        )
    if _utf16_units(key) > MAX_KEY_UNITS:
        raise InvalidStorageKeyError(f"{which} is longer than 1 KiB")
    return key


def encode_entity(pk: str, rk: str, entity: Mapping[str, Any]) -> Stored:
    """Validate the keys and properties and return the stored form (None dropped, JSON encoded)."""
    validate_key(pk, "PartitionKey")
    validate_key(rk, "RowKey")
    stored: Stored = {}
    for name, value in entity.items():
        _validate_property_name(name)
        if value is None:
            continue
        if isinstance(value, dict | list):
            stored[name + JSON_SUFFIX] = _checked_str(name, _to_json(name, value))
        else:
            stored[name] = _encode_scalar(name, value)
    if len(stored) > MAX_PROPERTIES:
        raise ValueError(f"entity has {len(stored)} properties; Table Storage allows {MAX_PROPERTIES}")
    if _entity_size(pk, rk, stored) > MAX_ENTITY_BYTES:
        raise ValueError("entity is larger than the 1 MiB Table Storage allows")
    return stored


def decode_entity(stored: Mapping[str, Any]) -> dict[str, Any]:
    """User properties from the stored form: ``<name>__json`` strings become ``<name>`` values."""
    entity: dict[str, Any] = {}
    for name, value in stored.items():
        if name.endswith(JSON_SUFFIX) and isinstance(value, str):
            try:
                entity[name[: -len(JSON_SUFFIX)]] = json.loads(value)
            except ValueError as error:
                raise StorageError(f"property {name} does not hold JSON") from error
        else:
            entity[name] = value
    return entity


def row_order(rk: str) -> bytes:
    """The sort key Table Storage uses for keys: UTF-16 code units, compared as unsigned numbers."""
    return rk.encode("utf-16-be", "surrogatepass")


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _validate_property_name(name: str) -> None:
    if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
        raise ValueError(f"invalid property name {name!r}: an ASCII identifier of at most 255 characters")
    if name in _RESERVED_NAMES or name.endswith(JSON_SUFFIX):
        raise ValueError(f"property name {name!r} is reserved")


def _to_json(name: str, value: dict[str, Any] | list[Any]) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"property {name!r} is not JSON-serialisable: {error}") from error


def _checked_str(name: str, value: str) -> str:
    if _utf16_units(value) > MAX_STRING_UNITS:
        raise ValueError(f"property {name!r} is longer than the 64 KiB Table Storage allows")
    return value


def _encode_scalar(name: str, value: object) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"property {name!r} does not fit in a 64-bit integer")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"property {name!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        return _checked_str(name, str(value))
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"property {name!r} is a naive datetime; give it a timezone")
        if value < _MIN_DATETIME:
            raise ValueError(f"property {name!r} is before 1601, the earliest Edm.DateTime")
        return plain_utc(value)
    raise TypeError(f"property {name!r} has unsupported type {type(value).__name__}")


def plain_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (the SDK returns a subclass that remembers the service's text)."""
    utc = value.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


def _entity_size(pk: str, rk: str, stored: Stored) -> int:
    """The service's documented size estimate of an entity, in bytes."""
    size = 4 + 2 * (_utf16_units(pk) + _utf16_units(rk)) + 4
    for name, value in stored.items():
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + 2 * _utf16_units(value)
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, int) and value in INT32:
            size += 4
        else:
            size += 8
    return size
