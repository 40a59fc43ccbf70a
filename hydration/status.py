"""What users watch: the latest runs and their tables, as the JSON of ``GET /api/status``.

The page (``status_page``) and the command line (``status_text``) render this same view, so the three
can never disagree. Each table carries its pace and, while it runs, an ETA (``progress``).

A run's status is derived from its tasks whenever it is read, so it can never disagree with them:
Running while any table is queued or running, Held while any table waits for approval (the run is not
over: approving it goes on), Failed when any failed, a table's other status when one is neither final nor
running (it waits for something), Skipped when every table was Skipped, Successful otherwise. A run
closed before any task (an invalid manifest, a private data lake,
nothing eligible) keeps the status it was recorded with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .checkpoints import CountBounds, Counters
from .messages import is_run_id
from .progress import task_progress
from .relink_rule import approve_hint
from .state import StateStore, TaskRecord
from .statuses import FINAL, Status

TASK_NAME = "CustomerId Backstamping Hydration"
GROUP = "Dataverse Hydration"


def _time(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def task_status(task: TaskRecord) -> str:
    """The status users see: a queued task counts as Running; any other status shows as stored."""
    return Status.RUNNING if task.status == Status.QUEUED else task.status


def run_status(record: dict[str, Any], tasks: list[TaskRecord]) -> str:
    """A run's status from its tasks (see the module docstring)."""
    if not tasks:
        return str(record.get("status") or Status.RUNNING)
    statuses = [task_status(t) for t in tasks]
    if Status.RUNNING in statuses:
        return Status.RUNNING
    if Status.HELD in statuses:
        return Status.HELD
    if Status.FAILED in statuses:
        return Status.FAILED
    waiting = [s for s in statuses if s not in FINAL]
    if waiting:
        return waiting[0]  # a status this version does not name (one added later) is the run's too
    if all(s == Status.SKIPPED for s in statuses):
        return Status.SKIPPED
    return Status.SUCCESSFUL


def _bounds_view(bounds: CountBounds) -> dict[str, Any]:
    """How exact the counts are, for the status answer (see ``Counters.bounds``)."""
    return {"countsExact": bounds.exact, "lowerBounds": list(bounds.lower), "upperBounds": list(bounds.upper)}


def task_view(task: TaskRecord, *, now: datetime) -> dict[str, Any]:
    """One table of a run, for the status answer (``now``: the time its pace is measured to)."""
    counters = Counters.from_dict(task.counters)
    counts = counters.to_dict()
    throttled = counts.pop("throttled_seconds", 0.0)
    return {
        "table": task.table,
        "status": task_status(task),
        "kind": task.kind,
        "full": task.full,
        "details": task.details or ("waiting in the queue" if task.status == Status.QUEUED else ""),
        "started": _time(task.started),
        "ended": _time(task.ended),
        "counts": counts,
        **_bounds_view(counters.bounds(plan=task.kind == "plan")),
        "throttledSeconds": round(float(throttled), 1),
        "phase": task.phase or None,
        "progress": task_progress(task, int(counts["rows_read"]), now=now).to_dict(),
        "sources": [list(s) for s in task.sources],
        **({"guard": task.guard} if task.guard else {}),
        **({"approve": approve_hint(task.run_id)} if task.status == Status.HELD else {}),
    }


def run_view(state: StateStore, record: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """One run with its tables and totals."""
    run_id = str(record.get("run_id"))
    tasks = sorted(state.tasks(run_id), key=lambda t: t.table)
    status = run_status(record, tasks)
    ended = record.get("ended")
    if ended is None and status in FINAL and tasks:
        ends = [t.ended for t in tasks if t.ended is not None]
        ended = max(ends) if ends else None
    total, bounds = Counters(), CountBounds()
    for task in tasks:
        counters = Counters.from_dict(task.counters)
        total, bounds = total + counters, bounds | counters.bounds(plan=task.kind == "plan")
    counts = total.to_dict()
    throttled = counts.pop("throttled_seconds", 0.0)
    return {
        "task": TASK_NAME,
        "group": GROUP,
        "runId": run_id,
        "trigger": record.get("trigger"),
        "status": status,
        "details": record.get("details") or "",
        "plan": any(t.kind == "plan" for t in tasks),
        "started": _time(record.get("started")),
        "ended": _time(ended) if status in FINAL else None,
        "counts": counts,
        **_bounds_view(bounds),
        "throttledSeconds": round(float(throttled), 1),
        "tables": [task_view(t, now=now) for t in tasks],
    }


def report(state: StateStore, *, now: datetime, limit: int = 10, run_id: str | None = None) -> dict[str, Any]:
    """The latest runs (or one run), newest first; ``now`` is when running tables' pace is measured."""
    if run_id is not None:
        record = state.run(run_id) if is_run_id(run_id) else None
        runs = [] if record is None else [record]
    else:
        runs = state.runs(limit=limit)
    return {
        "task": TASK_NAME,
        "group": GROUP,
        "generated": now.isoformat(timespec="seconds"),
        "runs": [run_view(state, r, now=now) for r in runs],
    }


JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""Headers of every JSON answer."""
