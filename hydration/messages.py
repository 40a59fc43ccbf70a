"""The queue message: one step of one table's pass, versioned and strictly decoded.

A message says "run ``run_id`` wants step ``seq`` of table ``table``". Steps are numbered from 0 (the
start of the pass); each step enqueues the next. Anything that does not decode exactly is rejected with
``MessageError`` so the worker records it instead of guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

VERSION = 1
KINDS = ("hydrate", "plan")
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-(?:[0-9a-f]{8}|[0-9a-f]{12})$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
MAX_TEXT = 4096


class MessageError(ValueError):
    """A queue message that is not a valid task message."""


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a run id: the pattern, and a start time that is a real UTC date and time.

    The pattern alone lets ``20260230T...`` through; the state store turns a run id's time into its row
    key, so a run id that names no real moment would fail there instead of being refused here.
    """
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        return False
    try:
        datetime.strptime(value[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class TaskMessage:
    """One step of one table's pass."""

    run_id: str
    table: str
    seq: int
    kind: str = "hydrate"

    def __post_init__(self) -> None:
        if not is_run_id(self.run_id):
            raise MessageError(f"invalid run id {self.run_id!r}"[:120])
        if not isinstance(self.table, str) or not _TABLE.fullmatch(self.table):
            raise MessageError(f"invalid table name {self.table!r}"[:120])
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or not 0 <= self.seq < 10_000_000:
            raise MessageError(f"invalid step number {self.seq!r}"[:120])
        if self.kind not in KINDS:
            raise MessageError(f"unknown message kind {self.kind!r}"[:120])

    def encode(self) -> str:
        """The message text (JSON); the queue adapter base64-encodes it as host.json expects."""
        return json.dumps(
            {"v": VERSION, "kind": self.kind, "run": self.run_id, "table": self.table, "seq": self.seq}
        )

    def next(self) -> TaskMessage:
        """The continuation: the same pass, the next step."""
        return TaskMessage(self.run_id, self.table, self.seq + 1, self.kind)

    @classmethod
    def decode(cls, text: str | None) -> TaskMessage:
        """Parse a message text; raise ``MessageError`` for anything but a valid version-1 message."""
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise MessageError("the message is empty, too long or not text")
        try:
            payload: Any = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MessageError("the message is not JSON") from exc
        if not isinstance(payload, dict):
            raise MessageError("the message is not a JSON object")
        if type(payload.get("v")) is not int or payload["v"] != VERSION:
            raise MessageError(f"unsupported message version {payload.get('v')!r}"[:120])
        expected = {"v", "kind", "run", "table", "seq"}
        if set(payload) != expected:
            raise MessageError(f"the message must have exactly the fields {sorted(expected)}")
        return cls(run_id=payload["run"], table=payload["table"], seq=payload["seq"], kind=payload["kind"])
