"""What each Azure Function does, with plain inputs and outputs, so ``function_app.py`` stays wiring.

The command line and the tests call these same handlers, with the same services, as the host would.
Each handler reads the settings when called (never at import): a configuration error becomes a clear
answer (HTTP 500 naming the settings) or a logged error, not a host that silently loads no functions.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from .approval import ApprovalError, approve
from .messages import is_run_id
from .planner import RunRequest, RunRequestError, Started, parse_request
from .service import Services
from .service import services as _configured_services
from .settings import SettingsError, apply_log_levels
from .status import report
from .status_page import render_page
from .statuses import Status
from .worker import Outcome

log = logging.getLogger(__name__)

EVENT_TYPE = "Hydration.UnificationCompleted"
"""The Event Grid event type that starts a run (published by an integration after CI-D's refresh)."""
MAX_BODY = 64 * 1024


def started_view(started: Started) -> dict[str, Any]:
    """A started run as the HTTP answer and the CLI show it."""
    view = asdict(started)
    return {
        "runId": view["run_id"],
        "status": view["status"],
        "details": view["details"],
        "queued": list(view["queued"]),
        "skipped": dict(view["skipped"]),
        "statusUrl": f"/api/status?run={started.run_id}",
    }


def _error(status: int, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": message, **extra}


def services(env: Mapping[str, str] | None = None) -> Services:
    """The process's services, with the log levels the settings ask for (HTTP request lines at INFO)."""
    svc = _configured_services(env)
    apply_log_levels(svc.settings)
    return svc


def on_timer(svc: Services | None = None) -> Started | None:
    """The timer: sweep stuck tables, start a run when work is owed."""
    svc = svc or services()
    return svc.planner().tick()


def on_event(event_type: str, data: Any, svc: Services | None = None) -> Started | None:
    """An Event Grid event: a unification-completed event starts a run; other types are ignored.

    An event naming tables that are not configured is recorded as a Skipped run with the reason (so it
    shows in the status) instead of raising, which would make Event Grid redeliver it in vain.
    """
    if event_type != EVENT_TYPE:
        log.warning("ignored an Event Grid event of type %r (expected %s)", event_type[:200], EVENT_TYPE)
        return None
    svc = svc or services()
    planner = svc.planner()
    try:
        request = parse_request(data, trigger="event")
        return planner.start(request)
    except RunRequestError as exc:
        return planner.reject(RunRequest(trigger="event"), f"the event was not honoured: {exc}")


def on_runs_request(body: bytes, *, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """``POST /api/runs``: 202 with the run id; 400 for a bad request; 500 for invalid configuration."""
    if len(body) > MAX_BODY:
        return _error(413, f"the request body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        return _error(
            400, "the request body is not JSON; send an object with optional keys full, tables, plan, approve"
        )
    try:
        request = parse_request(data, trigger="http")
        svc = services(env)
        started = svc.planner().start(request)
    except RunRequestError as exc:
        return _error(400, str(exc))
    except SettingsError as exc:
        return _error(500, "the app's settings are invalid", problems=exc.problems)
    # A run that could not start for the configuration's sake (an invalid manifest, another organization)
    # is the app's fault, not the caller's: 500, with the recorded run and the reason.
    return (500 if started.status == Status.FAILED else 202), started_view(started)


def on_approve_request(run_id: str, *, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """``POST /api/runs/{id}/approve``: 202 with the resumed tables; 400, 404 or 409 when nothing is."""
    try:
        svc = services(env)
        approved = approve(svc.state, svc.queue, run_id, owner="approval", now=svc.clock.now())
    except ApprovalError as exc:
        return _error(exc.status, str(exc))
    except SettingsError as exc:
        return _error(500, "the app's settings are invalid", problems=exc.problems)
    log.info("run %s approved: %s resumed", approved.run_id, ", ".join(approved.tables))
    return 202, {
        "runId": approved.run_id,
        "status": Status.RUNNING,
        "resumed": list(approved.tables),
        "statusUrl": f"/api/status?run={approved.run_id}",
    }


HISTORY_RUNS = 30
"""Runs the status page's chart covers (the page details only the ``limit`` newest)."""


def _status_query(params: Mapping[str, str]) -> tuple[int, str | None] | str:
    """The ``limit`` and ``run`` of a status request, or what is wrong with them."""
    try:
        limit = int(params.get("limit") or 10)
    except ValueError:
        return "limit must be a whole number"
    if not 1 <= limit <= 100:
        return "limit must be between 1 and 100"
    run_id = params.get("run") or None
    if run_id is not None and not is_run_id(run_id):
        return "run must be a run id such as 20261129T021500Z-1a2b3c4d"
    return limit, run_id


def _status_report(
    params: Mapping[str, str], env: Mapping[str, str] | None, *, history: int = 0
) -> tuple[int, dict[str, Any]]:
    """The report a status request asks for (at least ``history`` runs), or the error answer."""
    query = _status_query(params)
    if isinstance(query, str):
        return _error(400, query)
    limit, run_id = query
    try:
        svc = services(env)
    except SettingsError as exc:
        return _error(500, "the app's settings are invalid", problems=exc.problems)
    data = report(svc.state, now=svc.clock.now(), limit=max(limit, history), run_id=run_id)
    if run_id is not None and not data["runs"]:
        return _error(404, f"no run {run_id[:60]!r}")
    return 200, data


def on_status_request(
    params: Mapping[str, str], *, env: Mapping[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """``GET /api/status``: the latest runs (``limit``, default 10, at most 100) or one (``run``)."""
    return _status_report(params, env)


def on_status_page(params: Mapping[str, str], *, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``GET /api/status?format=html``: the live page, its chart over the last ``HISTORY_RUNS`` runs."""
    status, data = _status_report(params, env, history=HISTORY_RUNS)
    if status != 200:
        return status, f"<!doctype html><title>{status}</title><p>{html.escape(str(data.get('error')))}</p>"
    return status, render_page(data, detailed=int(params.get("limit") or 10))


def on_message(text: str | None, dequeue_count: int, svc: Services | None = None) -> Outcome:
    """The queue worker: one step of one table; retriable errors propagate so the queue redelivers."""
    svc = svc or services()
    outcome = svc.worker().handle(text)
    log.info("queue message (delivery %d): %s", dequeue_count, outcome.value)
    return outcome


def on_poison(text: str | None, dequeue_count: int, svc: Services | None = None) -> None:
    """The poison queue: record the task Failed with the reason and release its table's lease."""
    svc = svc or services()
    svc.worker().handle_poison(text, dequeue_count)
