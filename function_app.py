"""Azure Functions wiring (Python v2 model): each trigger decodes its input and calls ``hydration.handlers``.

No logic lives here and nothing is read at import time: settings are read inside the handlers, so a
configuration error is reported by the function that meets it instead of the host loading no functions.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from hydration import handlers
from hydration.settings import POISON_QUEUE_NAME, QUEUE_NAME, STORAGE
from hydration.status import JSON_HEADERS
from hydration.status_page import HTML_HEADERS

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(status: int, body: Any) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=2), status_code=status, mimetype="application/json", headers=JSON_HEADERS
    )


@app.function_name("timer_tick")
@app.timer_trigger(arg_name="timer", schedule="%HYDRATION_SCHEDULE%", run_on_startup=False, use_monitor=True)
def timer_tick(timer: func.TimerRequest) -> None:
    """Start a run when the mapping changed and settled or work is owed; sweep stuck tables."""
    handlers.on_timer()


@app.function_name("unification_completed")
@app.event_grid_trigger(arg_name="event")
def unification_completed(event: func.EventGridEvent) -> None:
    """A "unification completed" event from an integration starts a run at once."""
    handlers.on_event(event.event_type, event.get_json())


@app.function_name("start_runs")
@app.route(route="runs", methods=["POST"])
def start_runs(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/runs`` with ``{"full", "tables", "plan", "approve"}`` (all optional): 202, the run id."""
    return _json(*handlers.on_runs_request(req.get_body()))


@app.function_name("approve_run")
@app.route(route="runs/{run_id}/approve", methods=["POST"])
def approve_run(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/runs/{id}/approve``: a held run's tables go on live; 404 or 409 when nothing is held."""
    return _json(*handlers.on_approve_request(req.route_params.get("run_id", "")))


@app.function_name("status")
@app.route(route="status", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/status[?run=<id>][&limit=<n>][&format=html]``: the latest runs as JSON, or a page."""
    if req.params.get("format") == "html":
        code, page = handlers.on_status_page(dict(req.params))
        return func.HttpResponse(page, status_code=code, mimetype="text/html", headers=HTML_HEADERS)
    return _json(*handlers.on_status_request(dict(req.params)))


@app.function_name("worker")
@app.queue_trigger(arg_name="message", queue_name=QUEUE_NAME, connection=STORAGE)
def worker(message: func.QueueMessage) -> None:
    """One step of one table's pass; an exception leaves the message to the queue's retries."""
    handlers.on_message(message.get_body().decode("utf-8", errors="replace"), message.dequeue_count or 1)


@app.function_name("poison")
@app.queue_trigger(arg_name="message", queue_name=POISON_QUEUE_NAME, connection=STORAGE)
def poison(message: func.QueueMessage) -> None:
    """A step the queue gave up on: its task is recorded Failed and the table's lease released."""
    handlers.on_poison(message.get_body().decode("utf-8", errors="replace"), message.dequeue_count or 1)
