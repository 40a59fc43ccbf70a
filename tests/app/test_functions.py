"""Each function called as the host calls it, end to end against the emulator and Azurite.

The decorated functions get host-made inputs; the end state is checked row by row.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from dataverse_emulator.client import EmulatorClient
from hydration import handlers
from hydration.handlers import EVENT_TYPE
from hydration.messages import TaskMessage
from hydration.planner import RunRequest
from hydration.service import Services
from hydration.status import GROUP, TASK_NAME
from tests.functions import app_functions

from .conftest import assert_all_correct, drain, manifest, one_page_steps

pytestmark = pytest.mark.integration


def function(name: str) -> Any:
    return app_functions()[name].get_user_function()


def post_runs(body: dict[str, Any] | bytes | None = None) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    request = func.HttpRequest(method="POST", url="http://localhost/api/runs", body=raw)
    response = function("start_runs")(request)
    return response.status_code, json.loads(response.get_body())


def get_status(**params: str) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(method="GET", url="http://localhost/api/status", body=b"", params=params)
    response = function("status")(request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def event(data: dict[str, Any], event_type: str = EVENT_TYPE) -> func.EventGridEvent:
    return func.EventGridEvent(
        id="e1",
        data=data,
        topic="/subscriptions/x/resourceGroups/y/providers/Microsoft.EventGrid/topics/ci",
        subject="unification",
        event_type=event_type,
        event_time=datetime.now(UTC),
        data_version="1",
    )


def test_post_runs_answers_202_and_the_worker_links_every_row(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    status, body = post_runs({})
    assert status == 202
    assert body["status"] == "Running"
    assert body["queued"] == ["contact", "lead"]
    assert "members" in body["skipped"]  # the CSV source
    assert body["statusUrl"] == f"/api/status?run={body['runId']}"
    view = drain(svc, body["runId"])
    assert view["status"] == "Successful"
    assert_all_correct(emulator)

    code, report = get_status(run=body["runId"])
    assert code == 200
    (run,) = report["runs"]
    assert (report["task"], report["group"]) == (TASK_NAME, GROUP)
    assert (run["task"], run["group"]) == ("CustomerId Backstamping Hydration", "Dataverse Hydration")
    assert run["status"] == "Successful"
    assert run["trigger"] == "http"
    assert run["started"] is not None
    assert run["ended"] is not None
    tables = {t["table"]: t for t in run["tables"]}
    assert tables["members"]["status"] == "Skipped"
    assert "connector" in tables["members"]["details"]
    assert tables["contact"]["status"] == "Successful"
    assert tables["contact"]["counts"]["written"] > 0
    assert tables["contact"]["throttledSeconds"] == 0
    assert run["counts"]["written"] == sum(t["counts"]["written"] for t in run["tables"])


def test_post_runs_options_plan_full_and_tables(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    status, body = post_runs({"plan": True, "tables": ["Lead"]})
    assert status == 202
    assert body["queued"] == ["lead"]
    view = drain(svc, body["runId"])
    assert view["plan"] is True
    assert view["tables"][0]["counts"]["written"] > 0  # would write
    assert emulator.stats()["rows_written"] == {}  # a plan writes nothing
    status, body = post_runs({"full": True, "tables": ["contact"]})
    view = drain(svc, body["runId"])
    assert view["tables"][0]["full"] is True
    assert_all_correct(emulator, "contact")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{oops", "not JSON"),
        ({"tables": ["account"]}, "not configured in the manifest: account"),
        ({"full": "yes"}, "'full' must be true or false"),
        ({"everything": True}, "unknown request keys"),
        ({"tables": "contact"}, "must be a list"),
        ({"tables": []}, "'tables' is empty"),
    ],
)
def test_post_runs_rejects_bad_requests_with_400_and_records_nothing(
    host_env: dict[str, str], svc: Services, body: Any, expected: str
) -> None:
    status, answer = post_runs(body)
    assert status == 400
    assert expected in answer["error"]
    assert svc.state.runs() == []
    assert svc.queue.approximate_count() == 0


def test_invalid_settings_answer_500_naming_them(
    host_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYDRATION_PAGE_SIZE", "lots")
    status, answer = post_runs({})
    assert status == 500
    assert any("HYDRATION_PAGE_SIZE" in p for p in answer["problems"])
    status, answer = get_status()
    assert status == 500


def test_the_status_page_escapes_what_it_shows(host_env: dict[str, str], svc: Services) -> None:
    planner = svc.planner()
    planner.reject(RunRequest(trigger="event"), "not honoured: <script>alert(1)</script>")
    request = func.HttpRequest(
        method="GET", url="http://localhost/api/status", body=b"", params={"format": "html"}
    )
    response = function("status")(request)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = response.get_body().decode()
    assert "CustomerId Backstamping Hydration" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    bad = func.HttpRequest(
        method="GET", url="http://localhost/api/status", body=b"", params={"format": "html", "limit": "<b>"}
    )
    assert function("status")(bad).status_code == 400


def test_status_validates_its_parameters(host_env: dict[str, str]) -> None:
    assert get_status(limit="0")[0] == 400
    assert get_status(limit="x")[0] == 400
    assert get_status(run="../../etc")[0] == 400
    assert get_status(run="x" * 5000)[0] == 400
    assert get_status(run="20260101T000000Z-00000000")[0] == 404
    code, report = get_status()
    assert code == 200
    assert report["runs"] == []


def test_event_grid_event_starts_a_run(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    function("unification_completed")(event({"full": True}))
    (run,) = svc.state.runs()
    assert run["trigger"] == "event"
    view = drain(svc, run["run_id"])
    assert view["status"] == "Successful"
    assert all(t["full"] for t in view["tables"] if t["status"] != "Skipped")
    assert_all_correct(emulator)


def test_an_event_of_another_type_is_ignored(host_env: dict[str, str], svc: Services) -> None:
    function("unification_completed")(event({}, event_type="Microsoft.Storage.BlobCreated"))
    assert svc.state.runs() == []
    assert svc.queue.approximate_count() == 0


def test_an_event_for_a_table_that_is_not_configured_is_recorded_skipped(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    function("unification_completed")(event({"tables": ["account", "contact"]}))
    (run,) = svc.state.runs()
    assert run["status"] == "Skipped"
    assert "not configured in the manifest: account" in run["details"]
    assert svc.queue.approximate_count() == 0  # nothing queued, not even the configured table
    assert emulator.stats()["rows_written"] == {}


def test_the_timer_starts_a_run_only_when_work_is_owed(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    timer = function("timer_tick")
    timer(TimerRequest(past_due=False))
    (first,) = svc.state.runs()
    assert first["trigger"] == "timer"
    assert drain(svc, first["run_id"])["status"] == "Successful"  # never hydrated: owed

    timer(TimerRequest(past_due=False))
    assert len(svc.state.runs()) == 1  # nothing changed: no run, and no request beyond the checks

    emulator.reunify(0.05, seed=3)
    timer(TimerRequest(past_due=False))
    assert len(svc.state.runs()) == 1  # changes are younger than the settle period

    emulator.advance_clock(16 * 60)
    timer(TimerRequest(past_due=False))
    runs = svc.state.runs()
    assert len(runs) == 2
    view = drain(svc, runs[0]["run_id"])
    assert view["status"] == "Successful"
    assert all(t["full"] is False for t in view["tables"] if t["status"] != "Skipped"), view["tables"]
    summary = emulator.links("contact", rows="none")["summary"]
    assert summary["missing"] == summary["wrong"] == 0


def test_two_triggers_one_second_apart(host_env: dict[str, str], emulator: EmulatorClient) -> None:
    first = post_runs({})[1]
    time.sleep(1)
    second = post_runs({})[1]
    assert first["runId"] != second["runId"]
    # Workers doing one page per message, so the second run's messages arrive while the first's passes run.
    svc = one_page_steps(host_env)
    views = [drain(svc, first["runId"]), drain(svc, second["runId"])]
    assert views[0]["status"] == "Successful"
    # The second run found the tables leased: its tasks are Skipped and the first run did a rerun pass.
    assert views[1]["status"] == "Skipped"
    for table in views[1]["tables"]:
        if table["table"] != "members":
            assert "a rerun was requested" in table["details"]
    assert svc.queue.approximate_count() == 0
    assert_all_correct(emulator)


def test_the_poison_function_records_the_task_failed_and_releases_the_lease(
    host_env: dict[str, str], svc: Services, emulator: EmulatorClient
) -> None:
    _, body = post_runs({"tables": ["lead"]})
    run_id = body["runId"]
    message = svc.queue.receive(visibility_timeout=60)
    assert message is not None
    # A worker doing one page per message: after this step the pass is under way and holds the lease.
    handlers.on_message(message.text, 1, one_page_steps(host_env))
    svc.queue.delete(message)
    checkpoint = svc.state.checkpoint("lead").value
    assert checkpoint.active  # the pass started and holds the lease
    continuation = TaskMessage(run_id, "lead", checkpoint.seq).encode()
    function("poison")(QueueMessage(id="p1", body=continuation.encode(), dequeue_count=5))
    task = svc.state.task(run_id, "lead")
    assert task is not None
    assert task.value.status == "Failed"
    assert "failed 5 times" in task.value.details
    assert not svc.state.checkpoint("lead").value.active  # lease released
    _, report = get_status(run=run_id)
    assert report["runs"][0]["status"] == "Failed"


def test_a_malformed_message_is_rejected_without_an_exception(
    host_env: dict[str, str], svc: Services
) -> None:
    for body in (b"not json", b'{"v": 9}', base64.b64encode(b"x"), "\u00e9t\u00e9".encode()):
        function("worker")(QueueMessage(id="m", body=body, dequeue_count=1))
        function("poison")(QueueMessage(id="m", body=body, dequeue_count=5))
    assert svc.state.runs() == []


def test_a_manifest_for_another_organization_fails_the_run(
    host_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, svc: Services
) -> None:
    monkeypatch.setenv("HYDRATION_MANIFEST", json.dumps(manifest("https://fabrikam.crm.dynamics.com")))
    status, body = post_runs({})
    assert status == 500
    assert body["status"] == "Failed"
    assert "fabrikam" in body["details"]
