"""The run and table a log line belongs to, carried as structured fields rather than in the text.

An operator asks Application Insights "what happened to contact in run X": that needs the run id and
the table as fields of every record (``customDimensions`` there), not words inside messages. The worker
opens a context for each message (``step_fields``); loggers made by ``context_logger`` add its fields
to every record they emit, whatever handler receives it (the Functions host's, OpenTelemetry's, a
test's). The context is a ``contextvars.ContextVar``, so it follows the step into the write pool's
threads when their work is submitted through ``in_context``.

Only identifiers go in the context (the run id, the table's logical name, the lane): never tokens,
URLs or row contents.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

RUN_ID = "hydration.run_id"
"""The record field (and ``customDimensions`` key) holding the run id."""
TABLE = "hydration.table"
"""The record field holding the target table's logical name."""
LANE = "hydration.lane"
"""The record field holding the lane: ``hydrate`` (a live pass) or ``plan`` (a dry run)."""

_fields: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "hydration_log_fields", default=None
)

P = ParamSpec("P")
R = TypeVar("R")


def current_fields() -> Mapping[str, str]:
    """The fields of the context this code runs in (empty outside a step)."""
    return _fields.get() or {}


@contextmanager
def step_fields(*, run_id: str, table: str, lane: str) -> Iterator[None]:
    """Within the block, every record of a ``context_logger`` carries the run id, table and lane."""
    token = _fields.set({RUN_ID: run_id, TABLE: table, LANE: lane})
    try:
        yield
    finally:
        _fields.reset(token)


def in_context(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` bound to the caller's context, for work handed to another thread.

    A thread pool runs its work in the worker thread's own context, which knows no step; submitting the
    bound function keeps the step's fields on the records the work logs.
    """
    context = contextvars.copy_context()

    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.run(function, *args, **kwargs)

    return bound


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry the current step's fields (explicit ``extra`` keys win)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the step's fields into the record's ``extra``."""
        kwargs["extra"] = {**current_fields(), **(kwargs.get("extra") or {})}
        return msg, kwargs


def context_logger(name: str) -> ContextLogger:
    """The module logger ``name``, adding the step's fields to its records."""
    return ContextLogger(logging.getLogger(name), {})
