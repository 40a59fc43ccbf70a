"""The adaptive write controls: AIMD concurrency and bulk sizing (pure), and spreading over users."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.concurrency import AdaptiveLimit, ExecutionBudget, next_batch_size
from hydration.dataverse.auth import DevelopmentToken, TokenProvider
from hydration.dataverse.client import DataverseClient
from hydration.dataverse.errors import ThrottledError
from hydration.link_settings import LinkSettings
from hydration.writers import WritePool
from tests.engine.harness import CONTACT_SOURCES, Harness


def test_the_limit_starts_within_bounds_halves_on_throttling_and_creeps_back() -> None:
    limit = AdaptiveLimit(12, maximum=10, increase_after=3)
    assert limit.limit == 10
    limit.throttled()
    assert limit.limit == 5
    limit.throttled()
    limit.throttled()
    limit.throttled()
    assert limit.limit == 1  # never below the minimum
    for _ in range(2):
        limit.succeeded()
    assert limit.limit == 1
    limit.succeeded()
    assert limit.limit == 2
    limit.throttled()  # a throttle resets the run of successes
    limit.succeeded()
    limit.succeeded()
    assert limit.limit == 1


def test_the_limit_bounds_writes_in_flight() -> None:
    limit = AdaptiveLimit(2, maximum=2)
    in_flight, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal in_flight, peak
        with limit.slot():
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.01)
            with lock:
                in_flight -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveLimit(1, maximum=0)


@pytest.mark.parametrize(
    ("current", "elapsed", "expected"),
    [
        (500, 20.0, 250),  # twice too slow: halve
        (500, 40.0, 250),  # far too slow: at most halve per step
        (500, 12.5, 400),  # a little too slow: proportional
        (500, 7.0, 500),  # close enough: keep
        (500, 4.0, 751),  # far below: grow by at most half
        (900, 1.0, 1000),  # never above the maximum
        (60, 100.0, 50),  # never below the minimum
        (500, 0.0, 500),  # no measurement: keep
    ],
)
def test_next_batch_size(current: int, elapsed: float, expected: int) -> None:
    assert next_batch_size(current, elapsed=elapsed, target=10.0, minimum=50, maximum=1000) == expected


@pytest.mark.integration
def test_writes_are_spread_over_a_pool_of_application_users(emulator: EmulatorClient) -> None:
    """The users are the Dataverse side's: state and queue are in memory."""
    emulator.reset(contacts=600, leads=0, seed=4)
    harness = Harness(emulator, None, link=LinkSettings(page_size=600, write_batch=50), write_users=["app-2"])
    _, tasks, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    assert tasks["contact"].status == "Successful"
    per_user = emulator.stats()["per_user"]
    assert per_user["app"]["rows_written"] > 0
    assert per_user["app-2"]["rows_written"] > 0
    assert (
        per_user["app"]["rows_written"] + per_user["app-2"]["rows_written"]
        == tasks["contact"].counters["written"]
    )
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]


def _pool(users: int, **options: Any) -> WritePool:
    url = "http://127.0.0.1:9"
    clients = [
        DataverseClient(organization_url=url, tokens=TokenProvider(DevelopmentToken(url, f"u{i}"), url))
        for i in range(users)
    ]
    return WritePool(clients, **options)


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.001)


def test_submit_returns_at_once_and_chunks_of_all_users_stay_under_the_cap() -> None:
    pool = _pool(2, batch_size=10, max_in_flight=3)
    lock = threading.Lock()
    in_flight: dict[int, int] = {}
    peak: dict[int, int] = {}
    release = threading.Event()

    def send(client: DataverseClient, chunk: Sequence[int]) -> set[str]:
        user = pool.clients.index(client)
        with lock:
            in_flight[user] = in_flight.get(user, 0) + 1
            peak[user] = max(peak.get(user, 0), in_flight[user])
        release.wait()
        with lock:
            in_flight[user] -= 1
        return {str(chunk[0])} if chunk[0] == 50 else set()

    submission = pool.submit(list(range(200)), send)  # 20 chunks; returns while they wait for the release
    _wait_for(lambda: sum(in_flight.values()) == 6)
    release.set()
    assert submission.result() == {"50"}
    assert peak == {0: 3, 1: 3}  # both users used, neither beyond the cap


def test_a_read_never_waits_for_writes_but_holds_back_the_next_write() -> None:
    pool = _pool(1, batch_size=1, max_in_flight=2)
    started: list[int] = []
    release = threading.Event()

    def send(client: DataverseClient, chunk: Sequence[int]) -> set[str]:
        started.append(chunk[0])
        release.wait()
        return set()

    submission = pool.submit([1, 2, 3], send)
    _wait_for(lambda: len(started) == 2)  # the cap: two writes in flight, the third queued
    entered = threading.Event()

    def read() -> None:
        with pool.reading():
            entered.set()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=10)
    assert entered.is_set()  # the read borrowed a slot instead of waiting for a write to end
    release.set()
    assert submission.result() == set()
    assert sorted(started) == [1, 2, 3]


def test_an_error_in_a_chunk_stops_the_chunks_of_its_submission_not_yet_sent() -> None:
    pool = _pool(1, batch_size=1, parallelism=1)
    sent: list[int] = []

    def send(client: DataverseClient, chunk: Sequence[int]) -> set[str]:
        sent.append(chunk[0])
        raise ThrottledError("slow down", retry_after=60)

    submission = pool.submit([1, 2, 3, 4], send)
    with pytest.raises(ThrottledError):
        submission.result()
    assert sent == [1]
    assert pool.limit(0).limit == 1


def test_the_execution_budget_counts_the_window_and_requests_in_flight() -> None:
    budget = ExecutionBudget(limit_seconds=100, window_seconds=300, share=1.0)
    assert budget.wait_seconds(0.0, 500.0) == 0  # nothing counted yet: even an oversized request goes
    first = budget.start(0.0, 30.0)
    assert budget.used(10.0) == 30.0  # in flight at its expected duration
    assert budget.used(40.0) == 40.0  # ... or at how long it has run, when longer
    assert budget.end(first, 40.0) == 40.0
    second = budget.start(50.0, 20.0)
    assert budget.end(second, 70.0) == 20.0
    assert budget.used(70.0) == 60.0
    assert budget.wait_seconds(70.0, 40.0) == 0  # 60 + 40 fits in 100
    # 60 + 50 does not: the first request (40 s, ended at 40) must leave the window, at 340.
    assert budget.wait_seconds(70.0, 50.0) == pytest.approx(270.0)
    assert budget.used(340.0) == 20.0  # it has
    assert budget.wait_seconds(340.0, 50.0) == 0
    assert budget.used(370.0) == 0.0  # and the second at 370


def test_the_execution_budget_waits_for_an_answer_when_only_requests_in_flight_can_free_it() -> None:
    budget = ExecutionBudget(limit_seconds=100, window_seconds=300, share=0.9)
    assert budget.budget == pytest.approx(90.0)
    budget.start(0.0, 80.0)
    assert budget.wait_seconds(1.0, 5.0) == 0
    assert budget.wait_seconds(1.0, 20.0) == 300.0  # until the pool is woken by an answer


@pytest.mark.parametrize(
    "options", [{"limit_seconds": 0}, {"window_seconds": -1}, {"share": 0}, {"share": 1.5}]
)
def test_an_invalid_execution_budget_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive limit"):
        ExecutionBudget(**options)


def test_a_write_waits_for_its_users_budget_and_goes_once_the_window_has_moved() -> None:
    clock = FakeClock()
    pool = _pool(
        1,
        batch_size=10,
        max_in_flight=4,
        clock=clock,
        budget=lambda: ExecutionBudget(limit_seconds=100, window_seconds=300, share=1.0),
    )
    start = clock.monotonic()
    sent: list[tuple[float, int]] = []

    def send(client: DataverseClient, chunk: Sequence[int]) -> set[str]:
        sent.append((clock.monotonic() - start, chunk[0]))
        clock.advance(60.0)  # each chunk "takes" a minute of the fake clock
        return set()

    assert pool.submit(list(range(10)), send).result() == set()  # 60 s counted, 6 s a row expected now
    assert pool.submit(list(range(10, 20)), send).result() == set()  # 60 + 60 > 100: it had to wait
    assert [first for _, first in sent] == [0, 10]
    assert sent[1][0] >= 360.0  # the first minute had left the window (it ended at 60 s)
    assert pool.budget_waits == 1


def test_without_a_budget_the_pool_only_caps_writes_in_flight() -> None:
    clock = FakeClock()
    pool = _pool(1, batch_size=10, max_in_flight=4, clock=clock, budget=None)

    def send(client: DataverseClient, chunk: Sequence[int]) -> set[str]:
        clock.advance(1000.0)
        return set()

    assert pool.submit(list(range(40)), send).result() == set()
    assert pool.budget_waits == 0
