"""What one top-level request did, counted as it runs, for the cost model in ``limits``.

The server opens a ``RequestTally`` around each top-level request and ``organization.Stats`` feeds it as
the handlers count rows, so a request knows its own rows however deep in a ``$batch`` they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestTally:
    """What one top-level request did, for its cost: rows read and written, and ``$batch`` parts."""

    rows_read: int = 0
    rows_written: int = 0
    batch_parts: int = 0


_current: ContextVar[RequestTally | None] = ContextVar("request_tally", default=None)


@contextmanager
def tallying() -> Iterator[RequestTally]:
    """Count what the request served in this context does (werkzeug serves each in its own thread)."""
    tally = RequestTally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def tally_rows(*, read: int = 0, written: int = 0) -> None:
    """Add rows to the current request's tally; outside a request (seeding, control) nothing happens.

    Rows a rolled-back change set wrote stay counted: the server did the work before it undid it.
    """
    tally = _current.get()
    if tally is not None:
        tally.rows_read += read
        tally.rows_written += written


def tally_batch_part() -> None:
    """Count one request inside the current ``$batch``."""
    tally = _current.get()
    if tally is not None:
        tally.batch_parts += 1
