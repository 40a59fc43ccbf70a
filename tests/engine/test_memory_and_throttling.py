"""Bounded memory, and long throttles that re-enqueue instead of failing.

The memory test runs the emulator in its own process, so the traced allocations are the worker's alone.
The throttling and failure scenarios whose waits are the client's own (a ``Retry-After``, a queue delay,
a redelivery) run on a ``FakeClock`` with the in-memory state and queues, so they wait no real second;
the scenarios throttled by the emulator's service protection limits run in real time, because the
emulator's model runs on the host clock.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.dataverse.client import ClientSettings
from hydration.link_settings import LinkSettings
from hydration.worker import Outcome
from tests.engine.harness import CONTACT_SOURCES, Harness, unavailable

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def separate_emulator() -> Iterator[EmulatorClient]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dataverse_emulator", "--port", "0", "--contacts", "10", "--leads", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield EmulatorClient(process.stdout.readline().strip())
    finally:
        process.terminate()
        process.wait(timeout=20)


def peak_memory_of_a_full_pass(emulator: EmulatorClient, azurite: str, contacts: int) -> int:
    emulator.reset(contacts=contacts, leads=0, seed=17)
    # Full pages: the peak is one page's worth, and pages of random sizes would compare unlike with unlike.
    harness = Harness(
        emulator, azurite, link=LinkSettings(page_size=250, read_chunk=125, write_batch=50), full_pages=True
    )
    harness.start(tables={"contact": CONTACT_SOURCES})
    tracemalloc.start()
    try:
        harness.driver().drain(idle_timeout=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"] == contacts
    return peak


def test_peak_memory_does_not_grow_with_the_number_of_rows(
    separate_emulator: EmulatorClient, azurite: str
) -> None:
    # Small pages keep the runs short and make a per-row leak stand out the more against one page's worth.
    small = peak_memory_of_a_full_pass(separate_emulator, azurite, 1000)
    large = peak_memory_of_a_full_pass(separate_emulator, azurite, 4000)
    # four times the rows, the same page size: the peak is one page's worth either way
    assert large < small * 1.3, (small, large)


class ThrottlingSession(requests.Session):
    """A real session answering the first requests of one method that name UpdateMultiple with a long 429.

    GET: the capability query while the pass starts; POST: the bulk writes of a step.
    """

    throttles = 2
    method = "POST"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if method == self.method and "UpdateMultiple" in str(url) and ThrottlingSession.throttles > 0:
            ThrottlingSession.throttles -= 1
            response = requests.Response()
            response.status_code = 429
            response.headers["Retry-After"] = "2"
            response._content = (
                b'{"error":{"code":"0x80072321","message":"Combined execution time of incoming requests '
                b'exceeded limit of 1,200,000  milliseconds over time window of 300 seconds."}}'
            )
            return response
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_long_throttle_reenqueues_with_a_delay_and_never_poisons(
    emulator: EmulatorClient, method: str
) -> None:
    emulator.reset(contacts=800, leads=0, seed=3)
    ThrottlingSession.throttles = 2
    ThrottlingSession.method = method
    clock = FakeClock()
    harness = Harness(
        emulator,
        None,
        link=LinkSettings(page_size=400, write_batch=100, parallelism=1),
        client_settings=ClientSettings(inline_throttle_limit=1.0),
        session_factory=ThrottlingSession,
        clock=clock,
    )
    _, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})
    assert harness.outcomes[Outcome.THROTTLED] == 2
    assert drained.poisoned == 0
    assert drained.failed == 0
    assert tasks["contact"].status == "Successful"
    assert tasks["contact"].counters["throttled_seconds"] >= 4
    assert clock.slept >= 4  # the re-enqueued steps waited out their delay (on the fake clock)
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]


class FailingSession(requests.Session):
    """A real session whose bulk writes always answer 503 (a fake transport): a transient error that lasts."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if method == "POST" and "UpdateMultiple" in str(url):
            return unavailable()
        return super().request(method, url, *args, **kwargs)


def test_a_step_that_keeps_failing_is_poisoned_and_its_task_recorded_failed(
    emulator: EmulatorClient,
) -> None:
    emulator.reset(contacts=300, leads=0, seed=3)
    harness = Harness(
        emulator,
        None,
        client_settings=ClientSettings(max_retries=0),
        session_factory=FailingSession,
        clock=FakeClock(),
    )
    _, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})
    assert drained.poisoned == 1
    assert drained.failed == 5  # the host's maxDequeueCount
    assert tasks["contact"].status == "Failed"
    assert "failed 5 times" in tasks["contact"].details
    checkpoint = harness.state.checkpoint("contact").value
    assert not checkpoint.active  # the lease is released
    assert checkpoint.full_pass_owed  # the interrupted full pass is owed again
    assert harness.poison.approximate_count() == 1


class DeletingSession(requests.Session):
    """A real session that deletes one target row just before the first bulk write reaches the server."""

    deleted: str | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if method == "POST" and "UpdateMultiple" in str(url) and DeletingSession.deleted is None:
            target = kwargs["json"]["Targets"][0]["contactid"]
            DeletingSession.deleted = target
            gone = super().request(
                "DELETE", str(url).split("contacts/")[0] + f"contacts({target})", headers=kwargs["headers"]
            )
            assert gone.status_code == 204
        return super().request(method, url, *args, **kwargs)


def test_a_failed_bulk_write_is_resent_as_single_updates_and_the_bad_row_retried(
    emulator: EmulatorClient, azurite: str
) -> None:
    emulator.reset(contacts=400, leads=0, seed=3)
    DeletingSession.deleted = None
    harness = Harness(
        emulator,
        azurite,
        link=LinkSettings(page_size=1000, write_batch=1000),
        session_factory=DeletingSession,
        full_pages=True,  # one page, so one UpdateMultiple meets the deleted row
    )
    _, tasks, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    requests_made = emulator.stats()["requests"]
    assert requests_made["update_multiple"] == 1  # the all-or-nothing request failed on the deleted row
    assert requests_made["batch"] >= 2  # ... and was resent as single PATCHes
    assert tasks["contact"].counters["failed"] == 1
    entries = harness.state.retry_entries("contact", after=None, limit=10)
    assert [key for key, _ in entries] == [DeletingSession.deleted]
    assert entries[0][1]["reason"] == "the write failed"
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]

    _, tasks, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    assert harness.state.retry_count("contact") == 0  # re-decided: the row no longer exists
    assert tasks["contact"].counters["no_source"] >= 1


def test_ten_emulated_minutes_of_sustained_throttling_end_correct_and_never_poison(
    emulator: EmulatorClient,
) -> None:
    """The throttling is the emulator's, in real time; state and queue are in memory (on the real clock)."""
    emulator.reset(contacts=1000, leads=0, seed=6)  # enough work to be throttled past 600 s
    # A 400th of the documented execution-time budget, two hundred times faster than real time: the
    # pass needs far more server time than one window allows, so it is throttled for its whole length.
    factor = 0.005
    emulator.limits(enabled=True, time_factor=factor, max_execution_seconds=3, max_requests=40)
    harness = Harness(
        emulator,
        None,
        link=LinkSettings(page_size=300, write_batch=100),
        client_settings=ClientSettings(inline_throttle_limit=1.0),
    )
    started = time.monotonic()
    _, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})
    emulated_seconds = (time.monotonic() - started) / factor
    stats = emulator.stats()
    assert emulated_seconds >= 600
    assert sum(stats["throttled"].values()) > 0
    assert tasks["contact"].status == "Successful"
    assert drained.poisoned == 0
    assert harness.poison.approximate_count() == 0
    assert harness.outcomes[Outcome.THROTTLED] > 0  # long waits went back to the queue, not to failure
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]


@pytest.mark.parametrize("paced", [True, False])
def test_writes_paced_by_the_execution_budget_stay_under_the_limit(
    emulator: EmulatorClient, paced: bool
) -> None:
    """A writer that keeps its slots busy meets the execution-time limit unless it paces itself.

    The limit here is 6 server-seconds per 30 (a fiftieth of the documented rate), twenty times faster
    than real time: 0.3 s of execution per 1.5 s window. The paced pool is told those real-time figures.
    The pacing is the Dataverse side's, so state and queue are in memory (on the real clock).
    """
    factor, window, limit = 0.05, 30.0, 6.0
    emulator.reset(contacts=1500, leads=0, seed=8)
    emulator.limits(enabled=True, time_factor=factor, window_seconds=window, max_execution_seconds=limit)
    link = LinkSettings(
        page_size=500,
        write_batch=100,
        execution_limit_seconds=limit * factor if paced else None,
        execution_window_seconds=window * factor,
    )
    # Full pages: the budget holds writes, never reads, and short pages multiply the reads (a 429 they
    # earn is handled by the 429 path, which other tests cover).
    harness = Harness(emulator, None, link=link, full_pages=True)
    _, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})
    stats = emulator.stats()
    assert tasks["contact"].status == "Successful"
    assert drained.poisoned == 0
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]
    charged = sum(stats["execution_seconds"].values())
    assert charged > 2 * limit  # the pass needed several windows' worth of execution time
    if paced:
        assert sum(stats["throttled"].values()) == 0
    else:
        assert sum(stats["throttled"].values()) > 0
