"""Starting a run: record it and its tasks, and enqueue step 0 of each table.

The planner (eligibility, manifests, triggers) decides which tables and sources a run covers; this
module is the part every trigger shares, and what tests and the local runner call directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from .messages import TaskMessage
from .state import StateStore, TaskRecord, new_run_id
from .statuses import Status
from .storage.queues import TaskQueue


def start_run(
    state: StateStore,
    queue: TaskQueue,
    tables: Mapping[str, Sequence[tuple[str, str]]],
    *,
    now: datetime,
    trigger: str,
    full: bool = False,
    plan: bool = False,
    approve: bool = False,
) -> str:
    """Create a run with one task per table (its CI-D data sources) and enqueue their first steps."""
    run_id = new_run_id(now)
    state.create_run(run_id, trigger=trigger, started=now, details="plan (dry run)" if plan else "")
    kind = "plan" if plan else "hydrate"
    for table, sources in tables.items():
        state.put_task(
            TaskRecord(
                run_id=run_id,
                table=table,
                status=Status.QUEUED,
                kind=kind,
                sources=[[ds, entity] for ds, entity in sources],
                full=full or None,
                approve=approve or None,
            )
        )
        queue.send(TaskMessage(run_id, table, 0, kind).encode())
    return run_id
