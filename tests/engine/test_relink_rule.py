"""The relink guard's rule and moves as tables: hold or go, and what a survey, a hold and an approval do."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hydration.checkpoints import (
    SAMPLE_SIZE,
    Checkpoint,
    Counters,
    PageOutcome,
    Phase,
    advance,
    end_step,
    merge_changes,
    start_pass,
)
from hydration.relink_rule import (
    RelinkLimits,
    approved,
    changes_of,
    go_live,
    guard_view,
    hold,
    hold_reason,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
END = T0 + timedelta(hours=1)
DEFAULT = RelinkLimits()

RULE: list[tuple[str, int, int, RelinkLimits, str | None]] = [
    ("no change never holds", 0, 0, DEFAULT, None),
    ("no change with no links", 0, 100, RelinkLimits(0.0, 0), None),
    ("a few changes of many links", 5, 100, DEFAULT, None),
    ("exactly the share goes", 20, 100, DEFAULT, None),
    ("one more than the share holds", 21, 100, DEFAULT, "HYDRATION_MAX_RELINK_SHARE"),
    ("share 0.1 exactly at 10 of 100", 10, 100, RelinkLimits(0.1), None),
    ("share 0.3 exactly at 3 of 10", 3, 10, RelinkLimits(0.3), None),
    ("share 0.3 at 4 of 10", 4, 10, RelinkLimits(0.3), "HYDRATION_MAX_RELINK_SHARE"),
    ("every link moving holds", 100, 100, DEFAULT, "HYDRATION_MAX_RELINK_SHARE"),
    ("changes but no links counted holds", 1, 0, DEFAULT, "HYDRATION_MAX_RELINK_SHARE"),
    ("share 1 never holds on share", 100, 100, RelinkLimits(1.0), None),
    ("share 0 holds any change", 1, 1_000_000, RelinkLimits(0.0), "HYDRATION_MAX_RELINK_SHARE"),
    ("within the share but over the cap", 11, 1000, RelinkLimits(0.2, 10), "HYDRATION_MAX_RELINKS"),
    ("exactly the cap goes", 10, 1000, RelinkLimits(0.2, 10), None),
    ("cap 0 holds any change", 1, 1000, RelinkLimits(1.0, 0), "HYDRATION_MAX_RELINKS"),
    ("under the cap but over the share", 30, 100, RelinkLimits(0.2, 1000), "HYDRATION_MAX_RELINK_SHARE"),
]


@pytest.mark.parametrize(("name", "changes", "links", "limits", "expected"), RULE, ids=[r[0] for r in RULE])
def test_hold_or_go(name: str, changes: int, links: int, limits: RelinkLimits, expected: str | None) -> None:
    reason = hold_reason(changes, links, limits)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected in reason
        assert f"{changes:,}" in reason


def test_the_reason_says_the_share_in_words() -> None:
    assert hold_reason(150, 300, DEFAULT) == (
        "the pass would change 150 of the table's 300 existing links (50%), more than "
        "HYDRATION_MAX_RELINK_SHARE (20%)"
    )


@pytest.mark.parametrize(
    ("limits", "enabled"),
    [(DEFAULT, True), (RelinkLimits(1.0), False), (RelinkLimits(1.0, 5), True), (RelinkLimits(0.0), True)],
)
def test_the_guard_is_off_only_when_no_rule_can_hold(limits: RelinkLimits, enabled: bool) -> None:
    assert limits.enabled is enabled


def test_changes_are_links_overwritten_and_links_cleared_never_first_links() -> None:
    assert changes_of(Counters(written=100, relinked=7, cleared=3, already_correct=50)) == 10


def surveyed(*, full: bool) -> Checkpoint:
    base = Checkpoint(table="contact", watermark=T0 if not full else None, manifest_hash="h")
    return start_pass(base, run_id="r", owner="w", now=T0, end=END, full=full, survey=True)


def test_a_survey_never_moves_the_watermark_and_ends_at_the_guard() -> None:
    checkpoint = advance(surveyed(full=False), PageOutcome(Phase.RETRY, None, more=False), now=T0)
    ended = advance(checkpoint, PageOutcome(Phase.MAPPING, "k", more=False), now=T0)
    assert (ended.phase, ended.watermark, ended.window_end, ended.active) == (Phase.GUARD, T0, END, True)


def test_a_full_survey_reconciles_before_the_guard() -> None:
    checkpoint = advance(surveyed(full=True), PageOutcome(Phase.RETRY, None, more=False), now=T0)
    checkpoint = advance(checkpoint, PageOutcome(Phase.MAPPING, "k", more=False), now=T0)
    assert (checkpoint.phase, checkpoint.watermark) == (Phase.RECONCILE, None)
    checkpoint = advance(checkpoint, PageOutcome(Phase.RECONCILE, "k", more=False), now=T0)
    assert (checkpoint.phase, checkpoint.watermark, checkpoint.last_full_pass) == (Phase.GUARD, None, None)


def at_guard() -> Checkpoint:
    checkpoint = replace(
        surveyed(full=False),
        phase=Phase.GUARD,
        seq=4,
        sent_seq=4,
        counters=Counters(rows_read=90, written=60, relinked=40, throttled_seconds=3.0),
        changes=(("s1", "p1", "p2"), ("s2", "p3", None)),
    )
    return checkpoint


def test_going_live_walks_the_same_window_again_from_zero() -> None:
    live = go_live(at_guard())
    assert (live.phase, live.survey, live.seq, live.window_start, live.window_end) == (
        Phase.RETRY,
        False,
        4,
        T0,
        END,
    )
    assert live.counters == Counters(throttled_seconds=3.0)
    assert (live.changes, live.lease_owner, live.run_id) == ((), "w", "r")


def test_a_hold_keeps_the_plan_and_releases_the_lease() -> None:
    held = hold(at_guard())
    assert (held.phase, held.active, held.lease_owner, held.lease_renewed) == (Phase.HELD, False, None, None)
    assert (held.seq, held.sent_seq, held.watermark, held.window_end) == (5, 5, T0, END)
    assert held.counters.relinked == 40
    assert held.changes == at_guard().changes


def test_an_approval_resumes_the_held_pass_live_at_its_step() -> None:
    resumed = approved(hold(at_guard()), owner="approval", now=END)
    assert (resumed.phase, resumed.survey, resumed.seq, resumed.active) == (Phase.RETRY, False, 5, True)
    assert (resumed.lease_owner, resumed.lease_renewed, resumed.window_end) == ("approval", END, END)
    with pytest.raises(ValueError, match="only a held pass"):
        approved(resumed, owner="approval", now=END)


def test_the_view_names_ids_and_counts_only() -> None:
    view = guard_view(at_guard(), links=100, reason="too many")
    assert view == {
        "held": True,
        "reason": "too many",
        "relinked": 40,
        "cleared": 0,
        "links": 100,
        "rowsRead": 90,
        "toWrite": 60,
        "sample": [{"row": "s1", "from": "p1", "to": "p2"}, {"row": "s2", "from": "p3", "to": None}],
    }


def test_the_sample_is_bounded_and_names_each_row_once() -> None:
    more = [(f"s{i}", "a", "b") for i in range(30)]
    merged = merge_changes((("s3", "x", "y"),), more)
    assert len(merged) == SAMPLE_SIZE
    assert merged[0] == ("s3", "x", "y")
    assert [c[0] for c in merged].count("s3") == 1


@pytest.mark.parametrize("survey", [True, False])
def test_a_rerun_in_the_same_run_is_surveyed_when_the_guard_is_on(survey: bool) -> None:
    base = Checkpoint(table="contact", watermark=T0, manifest_hash="h")
    live = start_pass(base, run_id="r", owner="w", now=T0, end=END, full=False)
    live = advance(live, PageOutcome(Phase.RETRY, None, more=False), now=T0)
    done = replace(advance(live, PageOutcome(Phase.MAPPING, "k", more=False), now=T0), rerun_requested=True)
    rerun = end_step(done, rerun_end=END + timedelta(hours=1), owner="w", now=END, survey=survey)
    assert (rerun.phase, rerun.survey, rerun.window_start) == (Phase.RETRY, survey, END)
