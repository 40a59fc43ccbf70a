"""``function_app.py`` and ``host.json``: the bindings the host reads, and nothing read at import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydration.settings import POISON_QUEUE_NAME, QUEUE_NAME, STORAGE
from tests.functions import app_functions, python_without_settings

ROOT = Path(__file__).resolve().parents[2]


def bindings() -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads(f.get_function_json())["bindings"] for name, f in app_functions().items()}


def test_the_app_has_exactly_the_seven_functions() -> None:
    assert sorted(bindings()) == [
        "approve_run",
        "poison",
        "start_runs",
        "status",
        "timer_tick",
        "unification_completed",
        "worker",
    ]


def test_the_timer_reads_its_schedule_from_a_setting_and_never_runs_on_startup() -> None:
    (timer,) = bindings()["timer_tick"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%HYDRATION_SCHEDULE%"
    assert timer["runOnStartup"] is False


def test_the_queue_functions_listen_on_the_job_queue_and_its_poison_queue() -> None:
    (worker,) = bindings()["worker"]
    (poison,) = bindings()["poison"]
    assert (worker["type"], worker["queueName"], worker["connection"]) == (
        "queueTrigger",
        QUEUE_NAME,
        STORAGE,
    )
    assert (poison["type"], poison["queueName"], poison["connection"]) == (
        "queueTrigger",
        POISON_QUEUE_NAME,
        STORAGE,
    )
    assert POISON_QUEUE_NAME == QUEUE_NAME + "-poison"  # the name the host moves failed messages to


def test_the_http_functions_need_a_function_key() -> None:
    runs = bindings()["start_runs"][0]
    status = bindings()["status"][0]
    assert (runs["route"], runs["methods"], runs["authLevel"]) == ("runs", ["POST"], "FUNCTION")
    assert (status["route"], status["methods"], status["authLevel"]) == ("status", ["GET"], "FUNCTION")
    approve = bindings()["approve_run"][0]
    assert (approve["route"], approve["methods"], approve["authLevel"]) == (
        "runs/{run_id}/approve",
        ["POST"],
        "FUNCTION",
    )


def test_the_event_grid_trigger() -> None:
    (event,) = bindings()["unification_completed"]
    assert event["type"] == "eventGridTrigger"


def test_host_json_processes_one_message_at_a_time_per_instance() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    queues = host["extensions"]["queues"]
    assert queues["batchSize"] == 1
    assert queues["newBatchThreshold"] == 0
    assert queues["messageEncoding"] == "base64"  # the queue adapter base64-encodes what it sends
    assert queues["maxDequeueCount"] == 5
    assert host["functionTimeout"] == "00:30:00"


def test_importing_the_app_reads_no_settings() -> None:
    """An exception at import makes the host load no functions: the import must work with no settings."""
    result = python_without_settings(
        "-c", "import function_app; print(len(function_app.app.get_functions()))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
