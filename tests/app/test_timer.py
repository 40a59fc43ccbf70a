"""The timer's decisions: owed work only, retry lists, due full passes, and the sweep of stuck tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.planner import RunRequest
from hydration.service import Services

from .conftest import assert_all_correct, drain, one_page_steps, queue_driver

pytestmark = pytest.mark.integration


class Clock(FakeClock):
    """The app's clock, moved by the test (the emulator keeps its own server time)."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(app_env: dict[str, str], clock: Clock) -> Services:
    return one_page_steps(app_env, clock=clock)


def test_a_stuck_pass_is_swept_back_into_the_queue_and_finishes(
    timed: Services, clock: Clock, emulator: EmulatorClient
) -> None:
    started = timed.planner().start(RunRequest(trigger="test", tables=("contact",)))
    driver = queue_driver(timed)
    assert driver.step() is not None  # step 0: the pass starts
    assert driver.step() is not None  # step 1: a page; its continuation is sent
    lost = timed.queue.receive(visibility_timeout=60)
    assert lost is not None
    timed.queue.delete(lost)  # the chain is lost (say, a message deleted by hand)
    assert timed.planner().sweep(clock.now()) == []  # the lease is fresh: not stuck yet

    clock.advance(timedelta(minutes=31).total_seconds())
    assert timed.planner().sweep(clock.now()) == ["contact"]
    assert (
        timed.planner().sweep(clock.now()) == []
    )  # the sweep renewed the lease: one message, not one per tick
    view = drain(timed, started.run_id)
    assert view["status"] == "Successful"
    assert_all_correct(emulator, "contact")


def test_the_timer_starts_a_run_for_a_retry_list_and_a_due_full_pass(
    timed: Services, clock: Clock, emulator: EmulatorClient
) -> None:
    first = timed.planner().tick()
    assert first is not None
    drain(timed, first.run_id)
    assert timed.planner().tick() is None

    timed.state.add_retry(
        "lead", "00000000-0000-0000-0000-00000000abcd", reason="test", profile=None, now=clock.now()
    )
    second = timed.planner().tick()
    assert second is not None
    assert second.queued == ("lead",)  # only the table that owes work
    drain(timed, second.run_id)
    assert timed.state.retry_count("lead") == 0
    assert timed.planner().tick() is None

    clock.advance(timedelta(days=7, minutes=1).total_seconds())  # also past the hour a failure waits
    third = timed.planner().tick()
    assert third is not None
    assert third.queued == ("contact", "lead")
    view = drain(timed, third.run_id)
    assert all(t["full"] for t in view["tables"] if t["status"] != "Skipped")
    assert_all_correct(emulator)


def test_the_timer_leaves_a_busy_table_alone(timed: Services) -> None:
    started = timed.planner().start(RunRequest(trigger="test"))
    queue_driver(timed).step()  # one table's pass is under way
    again = timed.planner().tick()
    assert again is not None
    assert len(again.queued) == 1  # the other table, never hydrated, is owed; the busy one is not
    drain(timed, started.run_id)
    drain(timed, again.run_id)


def test_a_table_that_failed_is_retried_by_the_timer_an_hour_later(
    app_env: dict[str, str], clock: Clock, emulator: EmulatorClient
) -> None:
    svc = one_page_steps({**app_env, "HYDRATION_ALLOW_CREATE_LOOKUP": "false"}, clock=clock)
    first = svc.planner().tick()
    assert first is not None
    view = drain(svc, first.run_id)
    assert view["status"] == "Failed"  # no lookup column, and the worker may not create it
    assert all("provision" in t["details"] for t in view["tables"] if t["status"] == "Failed")

    clock.advance(timedelta(minutes=15).total_seconds())
    assert svc.planner().tick() is None  # not a Failed run on every tick

    clock.advance(timedelta(minutes=50).total_seconds())
    again = svc.planner().tick()
    assert again is not None
    assert set(again.queued) == {"contact", "lead"}
    drain(svc, again.run_id)
