"""Value conventions shared by the store, the query language and the JSON shapes.

The store keeps every value in a form SQLite compares correctly and quickly:

- GUIDs as lowercase hyphenated text (Dataverse answers GUIDs that way);
- date-times as integer microseconds since the Unix epoch, UTC (the answer shape, whole seconds or
  milliseconds, is a display choice made by a mode, see ``format_datetime``);
- strings as text, compared case-insensitively as Dataverse's SQL collation does;
- booleans as 0/1 integers.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?(Z|[+-]\d{2}:\d{2})?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EdmType(StrEnum):
    """The OData primitive types the emulator's columns use."""

    GUID = "Edm.Guid"
    STRING = "Edm.String"
    DATETIME = "Edm.DateTimeOffset"
    INT32 = "Edm.Int32"
    INT64 = "Edm.Int64"
    BOOLEAN = "Edm.Boolean"
    DECIMAL = "Edm.Decimal"


def is_guid(text: str) -> bool:
    """Tell whether ``text`` is a hyphenated GUID (the only form Dataverse accepts in URLs)."""
    return bool(_GUID_RE.match(text))


def normalize_guid(text: str) -> str:
    """Return the lowercase hyphenated form of a GUID, or raise ``ValueError``."""
    if not is_guid(text):
        raise ValueError(f"not a GUID: {text!r}")
    return text.lower()


def new_guid(bits: int) -> str:
    """Make a version-4-shaped GUID from 128 random bits (deterministic when the bits are)."""
    return str(uuid.UUID(int=bits, version=4))


def parse_datetime(text: str) -> int:
    """Parse an OData date-time literal (bare ISO 8601, UTC if no offset) into epoch microseconds."""
    match = _DATETIME_RE.match(text)
    if not match:
        raise ValueError(f"not a date-time: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError(f"not a date-time: {text!r}") from exc
    micros = int((fraction or "0").ljust(7, "0")[:6])
    total = (moment - _EPOCH).days * 86_400_000_000 + (moment - _EPOCH).seconds * 1_000_000 + micros
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        total -= sign * (hours * 3600 + minutes * 60) * 1_000_000
    return total


class Precision(StrEnum):
    """How ``modifiedon`` and other date-times are kept and shown (a mode: real behaviour unverified)."""

    SECOND = "second"
    """Kept and shown in whole seconds: many rows share a value, so ordering ties are common."""
    MILLISECOND = "millisecond"
    """Kept and shown with milliseconds."""
    HIDDEN_MILLISECOND = "hidden-millisecond"
    """Kept with milliseconds but shown in whole seconds, as SQL Server keeps and the Web API shows."""


def store_datetime(micros: int, precision: Precision) -> int:
    """Round a moment down to what the store keeps under ``precision``."""
    if precision is Precision.SECOND:
        return micros - micros % 1_000_000
    return micros - micros % 1_000


def format_datetime(micros: int, precision: Precision) -> str:
    """Render a stored moment as the Web API shows it (``2025-01-01T10:00:00Z``)."""
    seconds, rest = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if precision is Precision.MILLISECOND:
        text += f".{rest // 1000:03d}"
    return text + "Z"


def now_micros() -> int:
    """The host clock in epoch microseconds (the emulator adds its own offset on top)."""
    return int(datetime.now(tz=UTC).timestamp() * 1_000_000)
