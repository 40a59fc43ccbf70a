"""The fault matrix, part three: the worker process killed mid-page, and storage restarted mid-run.

A real worker process (the app's handlers draining the queue) is SIGKILLed while a page's writes are
in flight; Azurite itself is stopped and started again while a step is under way. In both, the message
is delivered again, the run ends Successful, and every row is checked against the emulator's truth.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.azurite import Azurite
from hydration import handlers
from hydration.checkpoints import Counters
from hydration.state import StateStore
from hydration.storage.driver import Delivery, QueueDriver
from hydration.storage.queues import AzureTaskQueue
from hydration.storage.tables import AzureStateTables

from .scene import Scene

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def test_a_worker_killed_mid_page_is_redelivered_and_ends_correct(scene: Callable[..., Scene]) -> None:
    s = scene(page_size=40, step_pages=1)
    run_id = s.start(tables=("contact",))
    # the third bulk write lands, then its answer is held 3 s: the worker is killed while it waits
    s.emulator.limits(time_factor=0.01)
    s.inject([{"kind": "slow", "delay_seconds": 300, "method": "POST", "path": "UpdateMultiple$", "nth": 3}])
    worker = subprocess.Popen(  # noqa: S603 - the interpreter running the tests, a module of this repo
        [sys.executable, "-m", "tests.faults.worker_loop", s.queue.name],
        cwd=ROOT,
        env={**os.environ, **s.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: s.emulator.faults()["matched"][0] >= 3, seconds=20)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    s.clear_faults()
    s.emulator.limits(time_factor=1.0)
    s.count(1)  # the kill

    view = s.drain(run_id)  # the message comes back when the dead worker's 2-second lease ends
    assert view["status"] == "Successful", view
    task = s.tables(view)["contact"]
    written = s.emulator.stats()["rows_written"]["contact"]
    assert Counters.from_dict(task["counts"]).written <= written  # never more than the emulator saw
    if not task["countsExact"]:
        assert "wrote at least" in task["details"]
    s.verify("contact")


def test_azurite_restarted_in_the_middle_of_a_run(
    scene: Callable[..., Scene], azurite_server: Azurite
) -> None:
    s = scene()
    # storage clients that do not retry in-process: the queue's redelivery is the retry under test,
    # and the SDK's backoff against a stopped Azurite would only add seconds
    tables = AzureStateTables.from_connection_string(s.azurite, retry_total=0)
    queue = AzureTaskQueue.from_connection_string(s.azurite, s.queue.name, retry_total=0)
    s.queue = queue
    s.svc = s.host(state=StateStore(tables, prefix=s.settings.table_prefix))
    run_id = s.start()
    handled = 0

    def handle(delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == 4:
            azurite_server.stop()  # storage goes away while a step is under way
        handlers.on_message(delivery.text, delivery.dequeue_count, s.svc)

    driver = QueueDriver(queue, s.poison, handle, visibility_timeout=0, lease_seconds=1)
    failed: list[Exception] = []
    try:
        for _ in range(100):
            driver.step()
    except Exception as exc:  # the handler failed on storage, then so did the release: the host logs it
        failed.append(exc)
    finally:
        azurite_server.start()
    assert len(failed) == 1
    assert handled == 4
    s.count(1)
    view = s.drain(run_id)  # the step's message comes back when its 1-second lease ends
    assert view["status"] == "Successful", view
    assert s.poison.approximate_count() == 0
    s.verify()
