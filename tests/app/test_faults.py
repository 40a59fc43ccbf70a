"""Runs through the app's handlers while things go wrong; the end state is checked row by row.

Faults come from the emulator (5xx bursts, dropped connections, service protection limits) and from
Azurite itself (stopped and restarted in the middle of a run).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from devtools.azurite import Azurite
from hydration import handlers
from hydration.planner import RunRequest
from hydration.service import Services
from hydration.storage.driver import Delivery, QueueDriver
from hydration.storage.queues import MAX_DELAY_SECONDS, MemoryTaskQueue
from hydration.worker import Outcome

from .conftest import drain, one_page_steps

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def assert_every_row_correct(emulator: EmulatorClient) -> None:
    for table in ("contact", "lead"):
        truth = emulator.links(table, rows="wrong")
        assert truth["rows"] == [], (table, truth["rows"][:3])
        assert truth["summary"]["correct"] == truth["summary"]["rows"], (table, truth["summary"])


def run_to_end(svc: Services, **request: Any) -> dict[str, Any]:
    started = svc.planner().start(RunRequest(trigger="test", **request))
    return drain(svc, started.run_id)


def test_bursts_of_server_errors(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    svc = one_page_steps(app_env)
    emulator.faults(
        [
            {"kind": "error", "status": 503, "nth": 4, "count": 3},
            {"kind": "error", "status": 500, "rate": 0.15},
            {"kind": "error", "status": 502, "rate": 0.05, "method": "POST", "after": True},
        ],
        seed=11,
    )
    view = run_to_end(svc)
    fired = sum(emulator.faults()["fired"])
    emulator.clear_faults()
    assert fired > 5
    assert view["status"] == "Successful"
    assert svc.poison.approximate_count() == 0
    assert_every_row_correct(emulator)


def test_dropped_connections(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    svc = one_page_steps(app_env)
    emulator.faults(
        [{"kind": "drop", "rate": 0.08}, {"kind": "drop", "rate": 0.08, "method": "POST", "after": True}],
        seed=5,
    )
    view = run_to_end(svc)
    fired = sum(emulator.faults()["fired"])
    emulator.clear_faults()
    assert fired > 2
    assert view["status"] == "Successful"
    assert_every_row_correct(emulator)


def test_sustained_throttling_under_the_service_protection_limits(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    svc = one_page_steps(app_env)
    emulator.limits(enabled=True, time_factor=0.01, max_execution_seconds=2, max_requests=30)
    try:
        view = run_to_end(svc, full=True)
        throttled = sum(emulator.stats()["throttled"].values())
    finally:
        emulator.limits(enabled=False)
    assert throttled > 0
    assert view["status"] == "Successful"
    assert svc.poison.approximate_count() == 0
    assert_every_row_correct(emulator)


def test_azurite_restarted_in_the_middle_of_a_run(
    app_env: dict[str, str], emulator: EmulatorClient, azurite_server: Azurite
) -> None:
    svc = one_page_steps(app_env)
    started = svc.planner().start(RunRequest(trigger="test"))
    handled = 0

    def handle(delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == 4:
            azurite_server.stop()  # storage goes away while a step is under way
        handlers.on_message(delivery.text, delivery.dequeue_count, svc)

    driver = QueueDriver(svc.queue, svc.poison, handle, visibility_timeout=0, lease_seconds=3)
    failures = 0
    try:
        for _ in range(100):
            if handled >= 4:
                break
            driver.step()
    except Exception:  # the handler failed on storage, then so did the release: the host would log it
        failures += 1
    finally:
        azurite_server.start()
    assert handled >= 4
    assert failures == 1
    time.sleep(3)  # the message's lease runs out; it is delivered again
    view = drain(svc, started.run_id)
    assert view["status"] == "Successful"
    assert svc.poison.approximate_count() == 0
    assert_every_row_correct(emulator)


def test_a_retry_after_beyond_the_queues_limit_delays_the_step_instead_of_failing_it(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    # A Retry-After above 604,800 s once made queue.send raise ValueError: the step went to poison and
    # the task Failed as "transient errors". The delay is clamped to the queue's 7-day maximum instead
    # (here the worker's own ceiling, HYDRATION_MAX_THROTTLE_DELAY_SECONDS, is set to that maximum).
    moment = [0.0]
    base = one_page_steps({**app_env, "HYDRATION_MAX_THROTTLE_DELAY_SECONDS": str(MAX_DELAY_SECONDS)})
    svc = replace(
        base,
        queue=MemoryTaskQueue(lambda: moment[0], name="tasks"),
        poison=MemoryTaskQueue(lambda: moment[0], name="tasks-poison"),
    )
    started = svc.planner().start(RunRequest(trigger="test"))
    first = svc.queue.receive(visibility_timeout=60)
    assert first is not None
    emulator.faults([{"kind": "throttle", "retry_after": 10 * MAX_DELAY_SECONDS, "count": 1}])
    try:
        outcome = handlers.on_message(first.text, first.dequeue_count, svc)
    finally:
        emulator.clear_faults()
    assert outcome is Outcome.THROTTLED
    svc.queue.delete(first)
    assert svc.poison.approximate_count() == 0
    others = svc.queue.approximate_count() - 1  # the re-enqueued step counts while it is hidden
    moment[0] += MAX_DELAY_SECONDS - 1  # still hidden a second before seven days
    seen = [svc.queue.receive(visibility_timeout=1) for _ in range(others)]
    assert all(m is not None and m.text != first.text for m in seen)
    assert svc.queue.receive(visibility_timeout=1) is None
    moment[0] += 2
    view = drain(svc, started.run_id)
    assert view["status"] == "Successful"
    assert svc.poison.approximate_count() == 0
    assert_every_row_correct(emulator)
