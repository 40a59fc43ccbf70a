"""Counts after an interruption: a redone step's earlier writes are not counted, so the counts say so.

A step interrupted after some of its writes landed is redone from its last checkpoint, and the rows it
wrote are then found correct: they count as already correct, not as written. Once a live pass redoes a
step, ``written``, ``cleared`` and ``stale`` are lower bounds and ``already_correct`` an upper bound, and
the task's details, the status JSON, the CLI table and the HTML page say "at least" / "at most".
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.checkpoints import (
    Checkpoint,
    CountBounds,
    Counters,
    Phase,
    claim_step,
    end_step,
    start_pass,
)
from hydration.link_settings import LinkSettings
from hydration.status import report
from hydration.status_page import render_page
from hydration.status_text import render
from tests.engine.harness import CONTACT_SOURCES, Harness

NOW = datetime(2026, 3, 1, tzinfo=UTC)
REDONE = CountBounds(lower=("written", "cleared", "stale", "retried_ok"), upper=("already_correct",))


@pytest.mark.parametrize(
    ("counters", "plan", "expected"),
    [
        (Counters(written=5), False, CountBounds()),
        (Counters(written=5, redone_steps=1), False, REDONE),
        (Counters(written=5, redone_steps=3), False, REDONE),
        (Counters(written=5, redone_steps=1), True, CountBounds()),  # a dry run wrote nothing to miss
        (Counters(), False, CountBounds()),
    ],
)
def test_counts_are_bounds_only_after_a_live_pass_redid_a_step(
    counters: Counters, plan: bool, expected: CountBounds
) -> None:
    assert counters.bounds(plan=plan) == expected
    assert counters.bounds(plan=plan).exact is (expected == CountBounds())


@pytest.mark.parametrize(
    ("name", "bounds", "words"),
    [
        ("written", CountBounds(), "2,860"),
        ("written", REDONE, "at least 2,860"),
        ("cleared", REDONE, "at least 7"),
        ("already_correct", REDONE, "at most 1,200"),
        ("rows_read", REDONE, "4,100"),  # pages and rows read are committed once per page: exact
    ],
)
def test_a_count_in_words(name: str, bounds: CountBounds, words: str) -> None:
    counters = Counters(written=2860, cleared=7, already_correct=1200, rows_read=4100, redone_steps=1)
    assert counters.amount(name, bounds) == words


def test_bounds_of_a_run_are_those_of_any_of_its_tables() -> None:
    assert (CountBounds() | CountBounds()).exact
    assert CountBounds() | REDONE == REDONE
    assert REDONE | REDONE == REDONE


def _started() -> Checkpoint:
    return start_pass(Checkpoint("contact"), run_id="r", owner="a", now=NOW, end=NOW, full=True)


@pytest.mark.parametrize(
    ("claims", "redone"),
    [(1, 0), (2, 1), (4, 3)],
)
def test_each_claim_of_a_step_after_the_first_counts_as_a_redo(claims: int, redone: int) -> None:
    checkpoint = _started()
    for _ in range(claims):
        checkpoint = claim_step(checkpoint, owner="b", now=NOW)
    assert checkpoint.step_claimed
    assert checkpoint.counters.redone_steps == redone
    assert (checkpoint.lease_owner, checkpoint.lease_renewed) == ("b", NOW)


def test_a_new_step_or_a_new_pass_starts_unclaimed() -> None:
    claimed = claim_step(_started(), owner="a", now=NOW)
    following = end_step(claimed, rerun_end=None, owner="a", now=NOW)
    assert following.phase is Phase.RETRY
    assert not following.step_claimed
    assert claim_step(following, owner="a", now=NOW).counters.redone_steps == 0
    restarted = start_pass(claimed, run_id="r2", owner="a", now=NOW, end=NOW, full=False)
    assert not restarted.step_claimed


@pytest.mark.integration
def test_a_crash_after_writes_landed_reports_at_least_what_was_written(emulator: EmulatorClient) -> None:
    """What is counted is the worker's, not storage's: state and queue are in memory."""
    emulator.reset(contacts=120, leads=0, seed=12)
    harness = Harness(emulator, None, link=LinkSettings(page_size=40, write_batch=20, step_pages=1))
    expected = harness.summary("contact")["expected_links"]
    # the worker dies after step 1's writes landed, before its checkpoint is saved
    harness.crash_state(lambda cp: cp.table == "contact" and cp.seq == 2 and cp.sent_seq < cp.seq)
    run_id, tasks, drained = harness.run(tables={"contact": CONTACT_SOURCES})

    assert drained.failed == 1
    task = tasks["contact"]
    assert task.status == "Successful"
    written = harness.written()["contact"]
    assert written == expected  # every row written once: the redone page found its rows written
    counters = Counters.from_dict(task.counters)
    assert counters.redone_steps == 1
    assert 0 < counters.written < written  # a lower bound, and honest: never above what was written
    missed = written - counters.written
    assert counters.already_correct >= missed  # what the redo found written counts as already correct
    summary = harness.summary("contact")
    assert summary["correct"] == summary["rows"]

    assert f"wrote at least {counters.written:,}," in task.details
    assert f"at most {counters.already_correct:,} already correct" in task.details
    assert "1 interrupted step(s) redone" in task.details
    data = report(harness.state, now=harness.clock.now(), run_id=run_id)
    view = data["runs"][0]
    table = view["tables"][0]
    assert table["countsExact"] is False
    assert table["lowerBounds"] == list(REDONE.lower)
    assert table["upperBounds"] == ["already_correct"]
    assert table["counts"]["redone_steps"] == 1
    assert view["countsExact"] is False  # the run's totals inherit the bound
    assert f"written at least {counters.written:,}" in render(data)
    assert f'<td class="n" data-col="written">at least {counters.written:,}</td>' in render_page(
        data, detailed=1
    )

    # the next pass is interrupted by nothing: its counts are exact again
    emulator.reunify(fraction=0.2, seed=3)
    harness.settle()
    harness.crash_state(lambda cp: False)
    run_id, tasks, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    table = report(harness.state, now=harness.clock.now(), run_id=run_id)["runs"][0]["tables"][0]
    assert table["countsExact"] is True
    assert "at least" not in tasks["contact"].details
