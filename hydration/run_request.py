"""What a trigger asks for: a run request read strictly from a POST body or an event, and its tables.

A request may choose tables among those the manifest configures, ask for a full pass or a dry run,
approve a full pass beforehand (``approve``: the relink guard does not hold it), and nothing else: it
never brings names of its own, so nothing a caller sends reaches a Dataverse URL unless an
administrator configured it. A request the planner cannot honour is the caller's mistake
(``RunRequestError``), answered or recorded, never half-applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .manifest import Manifest

_REQUEST_KEYS = frozenset({"full", "tables", "plan", "approve"})
MAX_REQUEST_TABLES = 200
"""As many tables as a manifest may list: a longer list cannot be a list of configured tables."""


class RunRequestError(ValueError):
    """A run request that cannot be honoured (unknown tables, malformed options): the caller's mistake."""


@dataclass(frozen=True)
class RunRequest:
    """What a trigger asks for."""

    trigger: str
    full: bool = False
    tables: tuple[str, ...] | None = None
    """Among the configured tables; ``None`` means all of them."""
    plan: bool = False
    approve: bool = False
    """The caller accepts whatever links the full pass changes: the relink guard does not hold it."""

    def __post_init__(self) -> None:
        if self.approve and not (self.full and not self.plan):
            raise RunRequestError(
                "'approve' applies to a full live pass: ask for full (and not plan) with it, or approve a "
                "held run with POST /api/runs/{id}/approve"
            )


def parse_request(data: Any, *, trigger: str) -> RunRequest:
    """Read ``{"full", "tables": [names], "plan", "approve"}`` (every key optional) strictly."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RunRequestError(
            "the request must be a JSON object with optional keys full, tables, plan and approve"
        )
    unknown = sorted(set(data) - _REQUEST_KEYS)
    if unknown:
        raise RunRequestError(f"unknown request keys {unknown[:5]}; allowed: full, tables, plan, approve")
    for key in ("full", "plan", "approve"):
        if key in data and not isinstance(data[key], bool):
            raise RunRequestError(f"{key!r} must be true or false")
    if data.get("approve") and trigger == "event":
        raise RunRequestError("an event cannot approve a pass: approval is an operator's (CLI or HTTP)")
    return RunRequest(
        trigger=trigger,
        full=data.get("full", False),
        tables=_tables(data.get("tables")),
        plan=data.get("plan", False),
        approve=data.get("approve", False),
    )


def _tables(value: Any) -> tuple[str, ...] | None:
    """The requested tables, lower-cased and without repeats; ``None`` (absent) means all of them."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not all(isinstance(t, str) for t in value)
        or len(value) > MAX_REQUEST_TABLES
    ):
        raise RunRequestError("'tables' must be a list of table logical names")
    if not value:
        raise RunRequestError("'tables' is empty: name at least one table, or leave it out to run them all")
    return tuple(dict.fromkeys(t.strip().lower() for t in value))


def select_tables(manifest: Manifest, tables: Sequence[str] | None) -> list[str]:
    """The configured tables a request chose, in the manifest's order (``RunRequestError`` for others)."""
    configured = manifest.tables
    if tables is None:
        return configured
    unknown = [t for t in tables if t not in configured]
    if unknown:
        raise RunRequestError(
            f"not configured in the manifest: {', '.join(unknown[:10])[:300]}; "
            f"configured tables: {', '.join(configured) or 'none'}"
        )
    return [t for t in configured if t in tables]
