"""The timer's decisions: owed work only, retry lists, due full passes, and the sweep of stuck tables."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.manifest import RUN_SKIPPED_EMPTY, RUN_SKIPPED_LAKE
from hydration.passes import manifest_hash
from hydration.planner import RunRequest
from hydration.service import Services, services
from hydration.settings import Settings
from hydration.state import TaskRecord

from .conftest import assert_all_correct, drain, manifest, one_page_steps, queue_driver

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
    """The app on the test's clock, with the default page size: a table's pass is a few steps."""
    return Services.from_settings(Settings.from_env(app_env), clock=clock)


def test_a_stuck_pass_is_swept_back_into_the_queue_and_finishes(
    app_env: dict[str, str], clock: Clock, emulator: EmulatorClient
) -> None:
    timed = one_page_steps(app_env, clock=clock)  # many steps, so the chain can be lost mid-pass
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


def timer_runs(svc: Services) -> list[dict[str, object]]:
    return [r for r in svc.state.runs(limit=50) if r.get("trigger") == "timer"]


def test_a_configuration_no_run_can_use_is_recorded_once_per_change_not_every_tick(
    app_env: dict[str, str], clock: Clock, emulator: EmulatorClient
) -> None:
    foreign = manifest("https://fabrikam.crm.dynamics.com")
    svc = one_page_steps({**app_env, "HYDRATION_MANIFEST": json.dumps(foreign)}, clock=clock)
    first = svc.planner().tick()
    assert first is not None
    assert first.status == "Failed"
    assert "describes the organization https://fabrikam.crm.dynamics.com" in first.details
    clock.advance(timedelta(minutes=15).total_seconds())
    assert svc.planner().tick() is None  # on record already: not a run per tick
    assert len(timer_runs(svc)) == 1

    lake = manifest(emulator.base_url, outputMode="privateDataLake")
    changed = one_page_steps({**app_env, "HYDRATION_MANIFEST": json.dumps(lake)}, clock=clock)
    second = changed.planner().tick()
    assert second is not None
    assert (second.status, second.details) == ("Skipped", RUN_SKIPPED_LAKE)
    assert changed.planner().tick() is None
    assert len(timer_runs(changed)) == 2


def test_an_invalid_manifest_is_recorded_once_by_the_timer(app_env: dict[str, str], clock: Clock) -> None:
    svc = one_page_steps({**app_env, "HYDRATION_MANIFEST": '{"version": 1}'}, clock=clock)
    first = svc.planner().tick()
    assert first is not None
    assert first.status == "Failed"
    assert svc.planner().tick() is None
    assert len(timer_runs(svc)) == 1


def test_a_manifest_without_tables_is_skipped_with_a_text_that_says_so(app_env: dict[str, str]) -> None:
    svc = services(
        {**app_env, "HYDRATION_MANIFEST": json.dumps(manifest(app_env["DATAVERSE_URL"], tables=[]))}
    )
    started = svc.planner().start(RunRequest(trigger="test"))
    assert (started.status, started.details) == ("Skipped", RUN_SKIPPED_EMPTY)
    assert "lists no tables" in started.details


def test_a_source_left_out_by_eligibility_does_not_start_a_run_every_tick(
    app_env: dict[str, str], clock: Clock
) -> None:
    lead = {
        "dataSource": "DataverseSales",
        "entity": "lead",
        "connector": "Dataverse",
        "primaryKey": "leadid",
    }
    members = {**lead, "dataSource": "LoyaltyPlatform", "entity": "Members", "dataverseTable": "lead"}
    typo = {**lead, "dataSource": "DataverseSale"}
    tables = [lead, members, typo]  # the sample leaves out the member ids and the typo
    env = {**app_env, "HYDRATION_MANIFEST": json.dumps(manifest(app_env["DATAVERSE_URL"], tables=tables))}
    svc = one_page_steps(env, clock=clock)
    first = svc.planner().tick()
    assert first is not None
    assert first.queued == ("lead",)
    drain(svc, first.run_id)
    assert svc.planner().tick() is None  # the pass was given one source: its configuration is unchanged


def test_the_timer_asks_about_200_sources_of_one_table_in_groups(
    app_env: dict[str, str], clock: Clock, emulator: EmulatorClient
) -> None:
    sales = {"dataSource": "DataverseSales", "entity": "contact", "connector": "Dataverse"}
    many = [{**sales, "primaryKey": "contactid"}] + [
        {**sales, "dataSource": f"Regional source {n:03d} ".ljust(100, "x"), "primaryKey": "contactid"}
        for n in range(199)
    ]
    env = {**app_env, "HYDRATION_MANIFEST": json.dumps(manifest(app_env["DATAVERSE_URL"], tables=many))}
    svc = one_page_steps(env, clock=clock)
    sources = [[e["dataSource"], e["entity"]] for e in many]
    loaded = svc.state.checkpoint("contact")
    hydrated = replace(
        loaded.value,
        watermark=clock.now() - timedelta(days=30),
        last_full_pass=clock.now(),
        manifest_hash=manifest_hash(
            TaskRecord(run_id="", table="contact", sources=sources), svc.settings.lookup
        ),
    )
    svc.state.save_checkpoint(hydrated, loaded.etag)
    planner = svc.planner()
    # Every seeded mapping row is newer than the watermark and settled: one query per group finds it.
    assert planner.schedule.owed(planner.manifest(), "contact", clock.now()) == "the mapping changed"
    assert emulator.stats()["statuses"].get("414", 0) == 0
