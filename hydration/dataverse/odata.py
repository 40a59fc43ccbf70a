"""OData literals and names: everything that goes into a URL is validated or escaped here.

Logical names come from configuration and metadata; they are checked against Dataverse's naming rule
before they reach a URL. String values are single-quoted with quotes doubled; GUIDs are validated and
normalised (lowercased) and written bare; date-times are written bare in UTC.

A GUID is accepted only in its hyphenated 8-4-4-4-12 form, in either case. Braces (``{guid}``), missing
hyphens and surrounding spaces are refused, not normalised away: a mapping row's
``msdynci_alternatevalue`` is a string column, and the ``In(...)`` lookups that find a source row's
mapping rows compare strings (case-insensitively, as Dataverse does). A ``{guid}`` value normalised to
the bare GUID would count as valid yet never be found by those lookups, so a newer mapping row written
that way would lose to an older one. Such a value is an invalid key: counted, never sent as a key, and
its row's link left as it is (before the reconcile clears a link, it looks those forms up as strings,
``in_strings``, so a row they name keeps its link).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

_LOGICAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]{1,120}$")
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HYPHENATED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class InvalidNameError(ValueError):
    """A table, column or relationship name that is not a valid Dataverse name."""


class InvalidGuidError(ValueError):
    """A value that is not a GUID in its hyphenated form."""


def logical_name(name: str) -> str:
    """Return ``name`` if it is a valid logical name (lowercase letters, digits, underscores), else raise."""
    if not isinstance(name, str) or not _LOGICAL_NAME.fullmatch(name):
        raise InvalidNameError(
            f"{name!r} is not a valid Dataverse logical name (lowercase letters, digits, _)"
        )
    return name


def schema_name(name: str) -> str:
    """Return ``name`` if it is a valid custom schema name (``prefix_Name``), else raise."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise InvalidNameError(
            f"{name!r} is not a valid schema name: it needs a publisher prefix, as new_Name"
        )
    return name


def normalize_guid(value: str) -> str:
    """The lowercase form of a hyphenated GUID; ``InvalidGuidError`` for anything else (see above)."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value  # the form Dataverse answers with: the common case, kept fast
    if not isinstance(value, str) or not _HYPHENATED.fullmatch(value):
        raise InvalidGuidError(f"not a GUID: {value!r}"[:80])
    return value.lower()


def try_guid(value: object) -> str | None:
    """``normalize_guid`` or ``None``."""
    try:
        return normalize_guid(value) if isinstance(value, str) else None
    except InvalidGuidError:
        return None


def string(value: str) -> str:
    """A string literal: single quotes, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def moment(value: datetime) -> str:
    """A bare UTC date-time literal with milliseconds (``2025-01-01T10:00:00.000Z``)."""
    if value.tzinfo is None:
        raise ValueError("date-times sent to Dataverse must be timezone-aware")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def in_filter(property_name: str, guids: Iterable[str]) -> str:
    """``Microsoft.Dynamics.CRM.In`` over GUIDs (validated), for reading rows by key in one request."""
    return in_strings(property_name, (normalize_guid(g) for g in guids))


def in_strings(property_name: str, values: Iterable[str]) -> str:
    """``Microsoft.Dynamics.CRM.In`` over string literals (escaped): a string column's rows in one request."""
    literals = ",".join(string(v) for v in values)
    name = string(logical_name(property_name))
    return f"Microsoft.Dynamics.CRM.In(PropertyName={name},PropertyValues=[{literals}])"


def lookup_value(lookup: str) -> str:
    """The query name of a lookup's value: ``_<lookup>_value``."""
    return f"_{logical_name(lookup)}_value"
