"""The hydration engine end to end: emulator over HTTP, state and queue on Azurite or in memory.

Every test verifies the end state against the emulator's truth (``/_emulator/links``) and counts the
writes the emulator received, so "writes only what differs" is measured, not assumed. A few smoke
tests run on Azurite (a first pass over big pages, the incremental and full passes, a crash redelivered
through real queue visibility, the retry list); the scenarios whose subject is the engine's logic keep
state and queue in memory, whose semantics the storage contract tests hold to Azurite's.
"""

from __future__ import annotations

import json

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.link_settings import LinkSettings
from hydration.messages import TaskMessage
from hydration.worker import Outcome
from tests.engine.harness import Harness

pytestmark = pytest.mark.integration


def all_correct(summary: dict[str, int]) -> bool:
    return summary["correct"] == summary["rows"] and summary["pending"] == 0


def small_scene(emulator: EmulatorClient, azurite: str | None, *, step_pages: int | None) -> Harness:
    """Small pages of a small scene: each table takes several pages, each with several writes."""
    emulator.reset(contacts=800, leads=240, seed=11)
    return Harness(emulator, azurite, link=LinkSettings(page_size=400, write_batch=80, step_pages=step_pages))


@pytest.fixture
def memory_harness(emulator: EmulatorClient) -> Harness:
    """One-page steps, so a test can name a step, with state and queue in memory."""
    return small_scene(emulator, None, step_pages=1)


@pytest.fixture
def whole_steps(emulator: EmulatorClient, azurite: str) -> Harness:
    """The same scene and pages, each step as long as its time budget allows (the product's default).

    For the scenarios that count writes across passes and name no step: fewer messages, same pages.
    """
    return small_scene(emulator, azurite, step_pages=None)


@pytest.fixture
def memory_whole_steps(emulator: EmulatorClient) -> Harness:
    """Whole steps with state and queue in memory."""
    return small_scene(emulator, None, step_pages=None)


def test_a_full_pass_over_thousands_of_rows_in_big_pages_links_every_mapped_row_and_touches_nothing_else(
    emulator: EmulatorClient, azurite: str
) -> None:
    """The largest page Dataverse serves (5,000), on a table that takes more than one of them.

    Short pages are on, so every page the server sends is smaller than asked and a step reads many.
    """
    emulator.reset(contacts=6000, leads=1000, seed=5)
    harness = Harness(emulator, azurite, link=LinkSettings(page_size=5000, write_batch=500))
    expected = {t: harness.summary(t)["expected_links"] for t in ("contact", "lead")}
    assert expected["contact"] > 5400

    _, tasks, drained = harness.run()

    assert {t: task.status for t, task in tasks.items()} == {"contact": "Successful", "lead": "Successful"}
    assert drained.poisoned == 0
    for table in ("contact", "lead"):
        summary = harness.summary(table)
        assert all_correct(summary), summary
        assert tasks[table].counters["written"] == expected[table]
    assert harness.written() == expected  # one write per row that needed one; no other table written
    assert harness.outcomes[Outcome.FAILED] == 0


def test_reunify_then_incremental_writes_only_changed_rows_and_full_pass_clears_stale(
    whole_steps: Harness,
) -> None:
    harness = whole_steps
    harness.run()
    harness.em.reset_stats()
    changes = harness.em.reunify(0.01, seed=4)
    assert changes["moved"]
    assert changes["deleted"]
    assert changes["merged_profiles"]
    harness.settle()
    before = harness.summary("contact")
    needed = before["missing"] + before["wrong"]
    assert needed > 0
    assert before["stale"] > 0

    _, tasks, _ = harness.run()

    assert tasks["contact"].full is False
    after = harness.summary("contact")
    assert after["missing"] == after["wrong"] == 0
    assert after["stale"] == before["stale"]  # deletions are invisible to an incremental pass
    assert harness.written().get("contact", 0) == needed == tasks["contact"].counters["written"]

    harness.em.reset_stats()
    _, tasks, _ = harness.run(full=True)
    assert tasks["contact"].full is True
    assert all_correct(harness.summary("contact"))
    assert tasks["contact"].counters["cleared"] == before["stale"]
    assert harness.written().get("contact", 0) == before["stale"]

    harness.em.reset_stats()
    _, tasks, _ = harness.run()
    assert harness.written() == {}
    assert tasks["contact"].counters["written"] == 0


def test_a_pass_with_no_change_writes_nothing(memory_whole_steps: Harness) -> None:
    harness = memory_whole_steps
    harness.run()
    harness.em.reset_stats()
    harness.settle()
    _, tasks, _ = harness.run()
    assert harness.written() == {}
    assert all(t.status == "Successful" for t in tasks.values())
    harness.em.reset_stats()
    harness.run(full=True)
    assert harness.written() == {}


def test_every_message_delivered_twice_gives_the_same_end_state_and_writes(memory_harness: Harness) -> None:
    harness = memory_harness
    expected = harness.summary("contact")["expected_links"]
    harness.queue.duplicate = True
    _, tasks, drained = harness.run()
    assert all_correct(harness.summary("contact"))
    assert harness.written()["contact"] == expected
    assert harness.outcomes[Outcome.DUPLICATE] >= harness.outcomes[Outcome.DONE] - 2
    assert drained.poisoned == 0
    assert all(t.status == "Successful" for t in tasks.values())


def _steps(harness: Harness, table: str) -> int:
    return harness.state.checkpoint(table).value.seq


@pytest.mark.parametrize("point", ["after_writes", "after_checkpoint", "after_enqueue"])
def test_a_crash_then_redelivery_gives_the_same_end_state(
    emulator: EmulatorClient, azurite: str, point: str
) -> None:
    """A crash at each point; the one after the checkpoint is redelivered by Azurite's real visibility."""
    harness = small_scene(emulator, azurite if point == "after_checkpoint" else None, step_pages=1)
    expected = {t: harness.summary(t)["expected_links"] for t in ("contact", "lead")}

    def is_contact_step_2(text: str) -> bool:
        message = TaskMessage.decode(text)
        return message.table == "contact" and message.seq == 2

    if point == "after_writes":
        harness.crash_state(lambda cp: cp.table == "contact" and cp.seq == 2 and cp.sent_seq < cp.seq)
    elif point == "after_checkpoint":
        harness.queue.crash_before = is_contact_step_2
    else:
        harness.queue.crash_after = is_contact_step_2

    _, tasks, drained = harness.run()

    assert drained.failed == 1
    assert drained.poisoned == 0
    for table in ("contact", "lead"):
        assert all_correct(harness.summary(table))
    assert harness.written() == expected  # the redone step found its rows already written
    assert all(t.status == "Successful" for t in tasks.values())
    # every step ran to completion once (the crashed step only when it was redone): no duplicate chain
    crashed_after_its_checkpoint = 0 if point == "after_writes" else 1
    steps = _steps(harness, "contact") + _steps(harness, "lead")
    assert harness.outcomes[Outcome.DONE] == steps - crashed_after_its_checkpoint
    assert harness.queue.approximate_count() == 0


def test_reunify_while_a_pass_runs_ends_correct_after_the_next_pass(memory_harness: Harness) -> None:
    harness = memory_harness
    harness.start()
    driver = harness.driver()
    for _ in range(3):
        assert driver.run_once()
    harness.em.reunify(0.02, seed=8)
    driver.drain(idle_timeout=10)
    harness.settle()
    harness.run(full=True)
    for table in ("contact", "lead"):
        assert all_correct(harness.summary(table))


def test_a_mapping_row_whose_profile_appears_later_waits_on_the_retry_list(whole_steps: Harness) -> None:
    harness = whole_steps
    harness.run()
    changes = harness.em.reunify(0.03, seed=21, defer_profiles=True)
    assert changes["deferred_profiles"] > 0
    harness.settle()
    _, tasks, _ = harness.run()
    waiting = tasks["contact"].counters["no_profile"]
    assert waiting > 0
    assert harness.state.retry_count("contact") == waiting
    assert harness.summary("contact")["pending"] == waiting

    assert harness.em.publish_deferred() == changes["deferred_profiles"]
    harness.settle()
    _, tasks, _ = harness.run()
    assert harness.state.retry_count("contact") == 0
    assert tasks["contact"].counters["retried_ok"] == waiting
    summary = harness.summary("contact")
    assert summary["missing"] == summary["wrong"] == summary["pending"] == 0


def test_plan_reports_exactly_what_the_real_pass_then_writes(memory_whole_steps: Harness) -> None:
    harness = memory_whole_steps
    harness.em.reset_stats()
    _, planned, _ = harness.run(plan=True)
    assert harness.written() == {}
    assert planned["contact"].counters["written"] == harness.summary("contact")["expected_links"]
    _, real, _ = harness.run()
    for table in ("contact", "lead"):
        assert real[table].counters["written"] == planned[table].counters["written"]
    assert harness.written() == {t: planned[t].counters["written"] for t in ("contact", "lead")}

    harness.em.reunify(0.02, seed=3)
    harness.settle()
    harness.em.reset_stats()
    _, planned, _ = harness.run(plan=True)
    assert harness.written() == {}
    _, real, _ = harness.run()
    assert real["contact"].counters["written"] == planned["contact"].counters["written"] > 0
    assert harness.written()["contact"] == planned["contact"].counters["written"]


@pytest.mark.parametrize(
    ("reset_modes", "live_modes"),
    [
        ({"profile_partitions": "custom"}, {"bind_without_partition": "not_found"}),
        ({"profile_partitions": "custom"}, {"bind_without_partition": "dangling"}),
        ({}, {"paging": "offset"}),
        ({}, {"paging": "snapshot"}),
        ({}, {"elastic_read_lag_seconds": 300}),
        ({}, {"update_multiple": {"contact": False, "lead": False, "msdynci_customerprofile": True}}),
        ({}, {"modifiedon_precision": "second"}),
        (
            {
                "cid_lookup": "present",
                "cid_lookup_navigation_property": "msdynci_LookupField_CustomerProfile",
            },
            {},
        ),
    ],
)
def test_every_mode_ends_with_every_row_linked_correctly(
    emulator: EmulatorClient, reset_modes: dict[str, object], live_modes: dict[str, object]
) -> None:
    emulator.reset(contacts=300, leads=60, seed=13, modes=reset_modes)
    if live_modes:
        emulator.modes(**live_modes)
    harness = Harness(emulator, None, link=LinkSettings(page_size=80, write_batch=30))
    harness.start()
    driver = harness.driver()
    driver.run_once()
    driver.run_once()
    emulator.reunify(0.03, seed=2)  # rows change while the first pass pages
    driver.drain(idle_timeout=10)
    harness.settle()
    harness.run()
    harness.run(full=True)
    for table in ("contact", "lead"):
        summary = harness.summary(table)
        assert all_correct(summary), (table, summary)
        assert summary["partition_mismatch"] == 0
    requests = emulator.stats()["requests"]
    if live_modes.get("update_multiple"):
        assert "update_multiple" not in requests
    if reset_modes.get("cid_lookup") == "present":
        assert "create_relationship" not in requests


def test_a_task_for_a_table_without_data_sources_fails_with_a_clear_message(memory_harness: Harness) -> None:
    harness = memory_harness
    _, tasks, drained = harness.run(tables={"contact": []})
    assert tasks["contact"].status == "Failed"
    assert "names no CI-D data sources" in tasks["contact"].details
    assert drained.poisoned == 0


def test_malformed_messages_are_rejected_without_retries(memory_harness: Harness) -> None:
    harness = memory_harness
    for text in [
        "not json",
        json.dumps({"v": 2}),
        json.dumps({"v": 1, "kind": "hydrate", "run": "x", "table": "contact", "seq": 0}),
    ]:
        harness.queue.send(text)
    drained = harness.driver().drain(idle_timeout=5)
    assert harness.outcomes[Outcome.REJECTED] == 3
    assert drained.failed == 0
    assert drained.poisoned == 0


def test_a_run_finding_the_table_busy_is_skipped_and_the_active_chain_reruns(memory_harness: Harness) -> None:
    harness = memory_harness
    first = harness.start()
    driver = harness.driver()
    assert driver.run_once()  # the first run's contact pass is now under way
    second = harness.start()
    driver.drain(idle_timeout=10)

    skipped = {t.table: t for t in harness.state.tasks(second)}["contact"]
    assert skipped.status == "Skipped"
    assert first in skipped.details
    assert "rerun was requested" in skipped.details
    checkpoint = harness.state.checkpoint("contact").value
    assert checkpoint.run_id == first
    assert not checkpoint.active
    assert not checkpoint.rerun_requested  # the first run's chain acted on it
    assert {t.table: t.status for t in harness.state.tasks(first)}["contact"] == "Successful"
    assert all_correct(harness.summary("contact"))
