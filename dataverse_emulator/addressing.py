"""How a request names a row: ``contacts(<guid>)``, alternate keys, and ``@odata.bind`` references."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import bad_request
from .schema import Entity
from .values import is_guid

_KEY_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")
_BIND = re.compile(r"^(?:[a-z]+://[^/]+)?/?(?:api/data/v[0-9.]+/)?([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$")


@dataclass(frozen=True)
class RowKey:
    """A row's primary key and, for elastic tables, the partition id the request named (if any)."""

    id: str
    partition_id: str | None = None


def _literal(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def parse_key(entity: Entity, text: str) -> RowKey:
    """Parse the inside of ``(...)`` after an entity set: a GUID, or ``name=value`` pairs."""
    text = unquote(text).strip()
    if is_guid(text):
        return RowKey(text.lower())
    pairs: dict[str, str] = {}
    for part in _split_pairs(text):
        match = _KEY_PAIR.match(part.strip())
        if not match:
            raise bad_request(f"The key '{text}' of {entity.entity_set} is not valid.")
        pairs[match.group(1)] = _literal(match.group(2).strip())
    key = pairs.pop(entity.primary_id, None)
    partition = pairs.pop("partitionid", None)
    if key is None or not is_guid(key) or pairs:
        raise bad_request(
            f"The key '{text}' of {entity.entity_set} must name {entity.primary_id} as a GUID"
            + (" and optionally partitionid." if entity.elastic else ".")
        )
    if partition is not None and not entity.elastic:
        raise bad_request(f"{entity.logical_name} is not an elastic table: partitionid is not a key.")
    return RowKey(key.lower(), partition)


def _split_pairs(text: str) -> list[str]:
    """Split ``a=1,b='x,y'`` on commas outside quotes."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_bind(value: object) -> tuple[str, str]:
    """Split an ``@odata.bind`` value into entity set name and the key text inside the parentheses."""
    if not isinstance(value, str):
        raise bad_request("The value of an 'odata.bind' annotation must be a string naming a row.")
    match = _BIND.match(value.strip())
    if not match:
        raise bad_request(f"The 'odata.bind' value '{value}' is not a valid entity reference URL.")
    return match.group(1), match.group(2)
