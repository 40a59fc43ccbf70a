"""``python -m hydration retry-failed``: a run for the tables whose latest task Failed.

A task fails for a reason an operator fixes (a privilege, a provisioned lookup, a long outage); once
fixed, this starts a run for exactly those tables rather than for all. A table's latest task is the
one of the newest run, among the last ``SCANNED_RUNS``, that covered it; dry runs do not count. A
failed table the manifest no longer configures is named and left out.
"""

from __future__ import annotations

from .manifest import Manifest
from .state import StateStore
from .statuses import Status

SCANNED_RUNS = 50
"""How many of the newest runs are looked at for each table's latest task."""


def failed_tables(state: StateStore, *, scanned: int = SCANNED_RUNS) -> list[str]:
    """The tables whose latest (non-dry-run) task Failed, sorted."""
    latest: dict[str, str] = {}
    for record in state.runs(limit=scanned):
        for task in state.tasks(str(record.get("run_id"))):
            if task.kind != "plan" and task.table not in latest:
                latest[task.table] = task.status
    return sorted(table for table, status in latest.items() if status == Status.FAILED)


def retry_selection(failed: list[str], manifest: Manifest) -> tuple[list[str], list[str]]:
    """The failed tables to retry (configured in the manifest) and those left out (no longer configured)."""
    configured = set(manifest.tables)
    return [t for t in failed if t in configured], [t for t in failed if t not in configured]
