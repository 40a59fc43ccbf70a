"""What a broken server or a stray message must not do to a pass: each a defect found, now a test.

End to end on the emulator (over HTTP, short pages), every end state checked row by row. The runs that
meet on one table (a merged rerun, a lapsed lease taken over) run on Azurite, whose ETags decide them;
the stray messages and the throttling are the worker's logic and keep state and queue in memory.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.dataverse.client import ClientSettings
from hydration.failures import QUEUE_MAX_DELAY, requeue_delay
from hydration.link_settings import LinkSettings
from hydration.messages import TaskMessage
from hydration.worker import Outcome
from tests.engine.harness import CONTACT_SOURCES, Harness, MeddlingState

pytestmark = pytest.mark.integration
CONTACTS = {"contact": CONTACT_SOURCES}


def all_correct(summary: dict[str, int]) -> bool:
    return summary["correct"] == summary["rows"] and summary["pending"] == 0


def test_throttling_forever_fails_the_task_past_the_cap_and_the_next_run_resumes(
    emulator: EmulatorClient,
) -> None:
    """On a fake clock with in-memory storage: the re-enqueue delays and backoffs wait no real time."""
    emulator.reset(contacts=300, leads=0, seed=3)
    harness = Harness(
        emulator,
        None,
        max_throttled_requeues=3,
        client_settings=ClientSettings(max_retries=1, inline_throttle_limit=0.5),
        clock=FakeClock(),
    )
    harness.run(tables=CONTACTS)  # a first pass, so the next one is incremental
    emulator.reunify(fraction=0.2, seed=5)
    harness.settle()
    emulator.faults([{"kind": "throttle", "retry_after": 0, "rate": 1.0}])
    _, tasks, stats = harness.run(tables=CONTACTS)
    emulator.clear_faults()
    assert tasks["contact"].status == "Failed"
    assert "throttled 3 times" in tasks["contact"].details
    assert harness.outcomes[Outcome.THROTTLED] == 3
    assert stats.poisoned == 0  # throttling never poisons
    checkpoint = harness.state.checkpoint("contact").value
    assert not checkpoint.active  # the lease is released
    _, tasks, _ = harness.run(tables=CONTACTS)
    assert tasks["contact"].status == "Successful"
    summary = harness.summary("contact")  # the changes are linked; stale links wait for a full pass
    assert (summary["wrong"], summary["missing"], summary["pending"]) == (0, 0, 0)
    assert summary["correct"] + summary["stale"] == summary["rows"]


@pytest.mark.parametrize(
    ("retry_after", "ceiling", "expected"),
    [
        (0, 3600, 1),
        (0.2, 3600, 1),
        (30.5, 3600, 31),
        (10**9, 3600, 3600),
        (10**9, 10**9, QUEUE_MAX_DELAY),
        (float("inf"), 3600, 3600),
        (float("nan"), 900, 900),
        (-5, 3600, 1),
    ],
)
def test_a_requeue_delay_is_cut_to_the_ceiling_and_the_queue_maximum(
    retry_after: float, ceiling: float, expected: int
) -> None:
    assert requeue_delay(retry_after, ceiling=ceiling) == expected


def test_a_retry_after_beyond_a_week_re_enqueues_at_the_ceiling_and_never_poisons(
    emulator: EmulatorClient,
) -> None:
    """On a fake clock with in-memory storage: the step waits out its ceiling at once."""
    emulator.reset(contacts=200, leads=0, seed=3)
    clock = FakeClock()
    harness = Harness(emulator, None, max_throttle_delay=1.0, clock=clock)
    emulator.faults([{"kind": "throttle", "retry_after": 700_000, "count": 1}])
    _, tasks, stats = harness.run(tables=CONTACTS)
    assert tasks["contact"].status == "Successful"
    assert harness.outcomes[Outcome.THROTTLED] == 1
    assert stats.poisoned == 0
    assert tasks["contact"].counters["throttled_seconds"] == 1.0
    assert clock.slept >= 1.0  # the re-enqueued step was delivered only after its delay
    assert all_correct(harness.summary("contact"))


def test_a_second_run_in_mid_step_is_merged_and_the_running_pass_carries_on(
    emulator: EmulatorClient, azurite: str
) -> None:
    emulator.reset(contacts=600, leads=0, seed=9)
    harness = Harness(emulator, azurite, link=LinkSettings(page_size=100, write_batch=50, step_pages=3))
    first = harness.start(tables=CONTACTS)

    def second_run() -> None:  # another trigger, while this step is between two pages
        second = harness.start(tables=CONTACTS)
        assert (
            harness._worker(harness.state).handle(TaskMessage(second, "contact", 0).encode())
            is Outcome.SKIPPED
        )

    harness.worker = harness._worker(
        MeddlingState(
            harness.state, lambda cp: cp.seq == 1 and cp.counters.pages == 1 and cp.active, second_run
        )
    )
    stats = harness.driver().drain(idle_timeout=10)
    assert stats.poisoned == 0
    task = harness.state.task(first, "contact")
    assert task is not None
    assert task.value.status == "Successful"
    assert harness.state.checkpoint("contact").value.active is False
    assert harness.outcomes[Outcome.DUPLICATE] == 0  # no step was mistaken for another copy's
    assert all_correct(harness.summary("contact"))


def test_a_superseded_run_is_closed_when_another_takes_its_lapsed_lease(
    emulator: EmulatorClient, azurite: str
) -> None:
    emulator.reset(contacts=400, leads=0, seed=4)
    harness = Harness(emulator, azurite, lease_ttl=timedelta(0))
    first = harness.start(tables=CONTACTS)
    assert harness.worker.handle(TaskMessage(first, "contact", 0).encode()) is Outcome.DONE
    harness.queue.clear()  # the chain is lost
    second, tasks, _ = harness.run(tables=CONTACTS)
    assert tasks["contact"].status == "Successful"
    old = harness.state.task(first, "contact")
    assert old is not None
    assert old.value.status == "Failed"
    assert f"superseded by run {second}" in old.value.details
    assert all_correct(harness.summary("contact"))


def test_a_late_poison_message_does_not_fail_a_finished_task(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=200, leads=0, seed=4)
    harness = Harness(emulator, None)
    run_id, tasks, _ = harness.run(tables=CONTACTS)
    assert tasks["contact"].status == "Successful"
    harness.worker.handle_poison(TaskMessage(run_id, "contact", 0).encode(), 5)
    harness.worker.handle_poison(TaskMessage(run_id, "contact", 1).encode(), 5)
    task = harness.state.task(run_id, "contact")
    assert task is not None
    assert task.value.status == "Successful"


def test_a_poison_message_for_a_stale_step_of_a_running_task_is_ignored(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=300, leads=0, seed=4)
    harness = Harness(emulator, None, link=LinkSettings(page_size=100, write_batch=100, step_pages=1))
    run_id = harness.start(tables=CONTACTS)
    for _ in range(3):
        assert harness.driver().step() is not None
    harness.worker.handle_poison(TaskMessage(run_id, "contact", 0).encode(), 5)
    task = harness.state.task(run_id, "contact")
    assert task is not None
    assert task.value.status == "Running"
    harness.driver().drain(idle_timeout=10)
    task = harness.state.task(run_id, "contact")
    assert task is not None
    assert task.value.status == "Successful"


def test_a_message_whose_kind_differs_from_its_task_is_rejected(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=300, leads=0, seed=4)
    harness = Harness(emulator, None)
    plan = harness.start(tables=CONTACTS, plan=True)
    assert harness.worker.handle(TaskMessage(plan, "contact", 0, "hydrate").encode()) is Outcome.REJECTED
    assert harness.written().get("contact", 0) == 0  # a dry run's task wrote nothing
    live = harness.start(tables=CONTACTS)
    assert harness.worker.handle(TaskMessage(live, "contact", 0, "hydrate").encode()) is Outcome.DONE
    counts = harness.state.task(live, "contact")
    assert counts is not None
    assert harness.worker.handle(TaskMessage(live, "contact", 1, "plan").encode()) is Outcome.REJECTED
    after = harness.state.task(live, "contact")
    assert after is not None
    assert after.value.counters == counts.value.counters


def test_the_losing_duplicate_of_step_0_is_dropped_quietly(emulator: EmulatorClient, azurite: str) -> None:
    emulator.reset(contacts=300, leads=0, seed=4)
    harness = Harness(emulator, azurite)
    run_id = harness.start(tables=CONTACTS)
    message = TaskMessage(run_id, "contact", 0).encode()
    rival = harness._worker(harness.state)
    outcomes: list[Outcome] = []
    harness.worker = harness._worker(
        MeddlingState(
            harness.state,
            lambda cp: cp.seq == 0 and cp.active,
            lambda: outcomes.append(rival.handle(message)),
        )
    )
    assert harness.worker.handle(message) is Outcome.DUPLICATE
    assert outcomes == [Outcome.DONE]


def test_the_worker_runs_on_the_injected_clock(emulator: EmulatorClient, azurite: str) -> None:
    emulator.reset(contacts=200, leads=0, seed=4)
    clock = FakeClock()
    harness = Harness(emulator, azurite, clock=clock)
    run_id, tasks, _ = harness.run(tables=CONTACTS)
    assert tasks["contact"].status == "Successful"
    started = tasks["contact"].started
    assert started is not None
    assert clock.now() - timedelta(hours=1) <= started <= clock.now()  # the task's times are the clock's
    assert run_id
