"""What users watch: the latest runs and their tables, as JSON (``GET /api/status``) or a text table.

A run's status is derived from its tasks whenever it is read, so it can never disagree with them:
Running while any table is queued or running, Failed when any failed, Skipped when every table was
Skipped, Successful otherwise. A run closed before any task (an invalid manifest, a private data lake,
nothing eligible) keeps the status it was recorded with.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any

from .checkpoints import CountBounds, Counters
from .messages import is_run_id
from .state import StateStore, TaskRecord
from .statuses import FINAL, Status

TASK_NAME = "CustomerId Backstamping Hydration"
GROUP = "Dataverse Hydration"


def _time(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def task_status(task: TaskRecord) -> str:
    """The status users see: a queued task counts as Running."""
    return task.status if task.status in FINAL else Status.RUNNING


def run_status(record: dict[str, Any], tasks: list[TaskRecord]) -> str:
    """A run's status from its tasks (see the module docstring)."""
    if not tasks:
        return str(record.get("status") or Status.RUNNING)
    statuses = [task_status(t) for t in tasks]
    if Status.RUNNING in statuses:
        return Status.RUNNING
    if Status.FAILED in statuses:
        return Status.FAILED
    if all(s == Status.SKIPPED for s in statuses):
        return Status.SKIPPED
    return Status.SUCCESSFUL


def _bounds_view(bounds: CountBounds) -> dict[str, Any]:
    """How exact the counts are, for the status answer (see ``Counters.bounds``)."""
    return {"countsExact": bounds.exact, "lowerBounds": list(bounds.lower), "upperBounds": list(bounds.upper)}


def task_view(task: TaskRecord) -> dict[str, Any]:
    """One table of a run, for the status answer."""
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
        "sources": [list(s) for s in task.sources],
    }


def run_view(state: StateStore, record: dict[str, Any]) -> dict[str, Any]:
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
        "tables": [task_view(t) for t in tasks],
    }


def report(state: StateStore, *, limit: int = 10, run_id: str | None = None) -> dict[str, Any]:
    """The latest runs (or one run), newest first."""
    if run_id is not None:
        record = state.run(run_id) if is_run_id(run_id) else None
        runs = [] if record is None else [record]
    else:
        runs = state.runs(limit=limit)
    return {"task": TASK_NAME, "group": GROUP, "runs": [run_view(state, r) for r in runs]}


def _amounts(view: dict[str, Any]) -> Callable[[str], str]:
    """A task view's counts in words, "at least" or "at most" where they are bounds."""
    counters = Counters.from_dict(view["counts"])
    bounds = CountBounds(lower=tuple(view.get("lowerBounds", ())), upper=tuple(view.get("upperBounds", ())))
    return lambda name: counters.amount(name, bounds)


def render(data: dict[str, Any]) -> str:
    """The report as a text table for the command line."""
    lines: list[str] = []
    for run in data["runs"]:
        lines.append(
            f"run {run['runId']}  {run['status']:10}  trigger {run['trigger']}  started {run['started']}"
            + (f"  ended {run['ended']}" if run["ended"] else "")
        )
        if run["details"]:
            lines.append(f"  {run['details']}")
        for table in run["tables"]:
            amount = _amounts(table)
            verb = "to write" if table["kind"] == "plan" else "written"
            lines.append(
                f"  {table['table']:24} {table['status']:10} {verb} {amount('written'):>9}  "
                f"correct {amount('already_correct'):>9}  cleared {amount('cleared'):>7}  "
                f"throttled {table['throttledSeconds']:>6.0f} s"
            )
            if table["details"]:
                lines.append(f"    {table['details']}")
    if not lines:
        lines.append("no runs yet")
    return "\n".join(lines)


_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 2em}\n"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\n"
    ".Successful{color:#107c10}.Failed{color:#a4262c}.Skipped{color:#605e5c}.Running{color:#0078d4}"
)
_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
    "<style>" + _STYLE.replace("{", "{{").replace("}", "}}") + "</style>\n"
    "</head><body><h1>{title}</h1><p>{group}</p>{runs}</body></html>\n"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

HTML_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Headers of every HTML answer: no script, no other source, only the page's own style (by its hash)."""
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""Headers of every JSON answer."""


def render_html(data: dict[str, Any]) -> str:
    """The report as a small self-contained HTML page (every value escaped: details can echo input)."""
    parts: list[str] = []
    for run in data["runs"]:
        status = escape(str(run["status"]))
        parts.append(
            f'<h2>Run {escape(run["runId"])} <span class="{status}">{status}</span></h2>'
            f"<p>trigger {escape(str(run['trigger']))}, started {escape(str(run['started']))}"
            f"{', ended ' + escape(str(run['ended'])) if run['ended'] else ''}. {escape(run['details'])}</p>"
            "<table><tr><th>table</th><th>status</th><th>written</th><th>already correct</th>"
            "<th>cleared</th><th>throttled (s)</th><th>details</th></tr>"
        )
        for table in run["tables"]:
            amount = _amounts(table)
            task_status = escape(str(table["status"]))
            parts.append(
                f'<tr><td>{escape(table["table"])}</td><td class="{task_status}">{task_status}</td>'
                f"<td>{amount('written')}</td><td>{amount('already_correct')}</td><td>{amount('cleared')}</td>"
                f"<td>{table['throttledSeconds']:.0f}</td><td>{escape(table['details'])}</td></tr>"
            )
        parts.append("</table>")
    if not data["runs"]:
        parts.append("<p>No runs yet.</p>")
    return _PAGE.format(title=escape(TASK_NAME), group=escape(GROUP), runs="".join(parts))
