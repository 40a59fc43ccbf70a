"""Bounded memory, and long throttles that re-enqueue instead of failing.

The memory test runs the emulator in its own process, so the traced allocations are the worker's alone.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dataverse_emulator.client import EmulatorClient
from hydration.dataverse.client import ClientSettings
from hydration.linking import LinkSettings
from hydration.worker import Outcome
from tests.engine.harness import CONTACT_SOURCES, Harness

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
    harness = Harness(emulator, azurite, link=LinkSettings(page_size=500, read_chunk=250, write_batch=100))
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
    small = peak_memory_of_a_full_pass(separate_emulator, azurite, 2000)
    large = peak_memory_of_a_full_pass(separate_emulator, azurite, 8000)
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
    emulator: EmulatorClient, azurite: str, method: str
) -> None:
    emulator.reset(contacts=800, leads=0, seed=3)
    ThrottlingSession.throttles = 2
    ThrottlingSession.method = method
    harness = Harness(
        emulator,
        azurite,
        link=LinkSettings(page_size=400, write_batch=100, parallelism=1),
        client_settings=ClientSettings(inline_throttle_limit=1.0),
        session_factory=ThrottlingSession,
    )
    _, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})
    assert harness.outcomes[Outcome.THROTTLED] == 2
    assert drained.poisoned == 0
    assert drained.failed == 0
    assert tasks["contact"].status == "Successful"
    assert tasks["contact"].counters["throttled_seconds"] >= 4
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]
