"""Checkpoint arithmetic: windows, full-pass reasons, passes, steps, leases and counters (pure, no clocks)."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from hydration.checkpoints import (
    Checkpoint,
    Counters,
    FullPassReason,
    PageOutcome,
    Phase,
    advance,
    end_step,
    finish_pass,
    full_pass_cause,
    full_pass_reason,
    lease_expired,
    only_rerun_asked,
    start_pass,
    window_end,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
HASH = "hash-1"
RUN = "20250301T120000Z-0123abcd"


def hydrated(**changes: object) -> Checkpoint:
    """A table hydrated before: watermark, a recent full pass, the current manifest hash."""
    base = Checkpoint(
        table="contact",
        watermark=T0 - timedelta(hours=1),
        last_full_pass=T0 - timedelta(days=1),
        manifest_hash=HASH,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def reason(checkpoint: Checkpoint, *, forced: bool = False, manifest_hash: str = HASH) -> str | None:
    return full_pass_reason(checkpoint, now=T0, manifest_hash=manifest_hash, full_every=WEEK, forced=forced)


# -- window_end ------------------------------------------------------------------------------------


def test_window_end_is_server_time_minus_settle() -> None:
    assert window_end(T0, timedelta(minutes=15)) == datetime(2025, 3, 1, 11, 45, tzinfo=UTC)


def test_window_end_without_settle_is_server_time() -> None:
    assert window_end(T0, timedelta(0)) == T0


# -- full_pass_reason ------------------------------------------------------------------------------


def test_no_reason_for_an_up_to_date_table() -> None:
    assert reason(hydrated()) is None


def test_forced_wins_over_everything() -> None:
    text = reason(hydrated(), forced=True)
    assert text is not None
    assert "asked for" in text
    # forced is reported even when other reasons hold too
    assert reason(Checkpoint(table="contact"), forced=True) == text


def test_no_watermark_means_no_checkpoint_yet() -> None:
    text = reason(Checkpoint(table="contact"))
    assert text is not None
    assert "no checkpoint" in text


def test_owed_full_pass() -> None:
    text = reason(hydrated(full_pass_owed=True))
    assert text is not None
    assert "owed" in text


def test_manifest_changed() -> None:
    text = reason(hydrated(), manifest_hash="hash-2")
    assert text is not None
    assert "configuration changed" in text


def test_manifest_hash_never_saved_counts_as_changed() -> None:
    text = reason(hydrated(manifest_hash=None))
    assert text is not None
    assert "configuration changed" in text


def test_schedule_due_exactly_at_the_interval() -> None:
    text = reason(hydrated(last_full_pass=T0 - WEEK))
    assert text is not None
    assert "scheduled" in text


def test_schedule_not_due_just_before_the_interval() -> None:
    assert reason(hydrated(last_full_pass=T0 - WEEK + timedelta(seconds=1))) is None


def test_schedule_due_when_no_full_pass_was_recorded() -> None:
    text = reason(hydrated(last_full_pass=None))
    assert text is not None
    assert "scheduled" in text


def test_reasons_are_checked_in_order() -> None:
    # no watermark comes before owed, owed before manifest change, manifest before schedule
    everything = Checkpoint(table="contact", full_pass_owed=True, manifest_hash="old")
    assert "no checkpoint" in (reason(everything) or "")
    owed_and_changed = hydrated(full_pass_owed=True, manifest_hash="old", last_full_pass=None)
    assert "owed" in (reason(owed_and_changed) or "")
    changed_and_due = hydrated(manifest_hash="old", last_full_pass=None)
    assert "configuration" in (reason(changed_and_due) or "")


# -- start_pass ------------------------------------------------------------------------------------


def dirty(**changes: object) -> Checkpoint:
    """A checkpoint left over from an earlier pass: cursors, counters, a rerun request."""
    return hydrated(
        run_id="20250228T120000Z-ffffffff",
        seq=17,
        sent_seq=17,
        phase="idle",
        cursor="c",
        retry_cursor="r",
        rerun_requested=True,
        counters=Counters(pages=3, written=9, throttled_seconds=2.5),
        **changes,
    )


def test_start_full_pass() -> None:
    end = T0 - timedelta(minutes=15)
    started = start_pass(dirty(), run_id=RUN, owner="w1", now=T0, end=end, full=True)
    assert started.full is True
    assert started.window_start is None
    assert started.window_end == end
    assert started.phase == "retry"
    assert started.active


def test_start_incremental_pass_reads_from_the_watermark() -> None:
    checkpoint = dirty()
    end = T0 - timedelta(minutes=15)
    started = start_pass(checkpoint, run_id=RUN, owner="w1", now=T0, end=end, full=False)
    assert started.full is False
    assert started.window_start == checkpoint.watermark
    assert started.window_end == end


def test_incremental_window_never_ends_before_the_watermark() -> None:
    checkpoint = dirty()
    assert checkpoint.watermark is not None
    end = checkpoint.watermark - timedelta(minutes=5)  # the server clock went backwards
    started = start_pass(checkpoint, run_id=RUN, owner="w1", now=T0, end=end, full=False)
    assert started.window_end == checkpoint.watermark
    assert started.window_start == checkpoint.watermark


def test_full_window_may_end_before_the_old_watermark() -> None:
    checkpoint = dirty()
    assert checkpoint.watermark is not None
    end = checkpoint.watermark - timedelta(minutes=5)
    started = start_pass(checkpoint, run_id=RUN, owner="w1", now=T0, end=end, full=True)
    assert started.window_end == end


def test_start_pass_new_run_starts_at_step_zero() -> None:
    started = start_pass(dirty(), run_id=RUN, owner="w1", now=T0, end=T0, full=False)
    assert (started.run_id, started.seq, started.sent_seq) == (RUN, 0, 0)


def test_start_pass_continues_step_numbers_for_a_rerun() -> None:
    started = start_pass(dirty(), run_id=RUN, owner="w1", now=T0, end=T0, full=False, seq=18)
    assert (started.seq, started.sent_seq) == (18, 18)


def test_start_pass_resets_cursors_counters_and_rerun_request() -> None:
    started = start_pass(dirty(), run_id=RUN, owner="w1", now=T0, end=T0, full=False)
    assert started.cursor is None
    assert started.retry_cursor is None
    assert started.counters == Counters()
    assert started.rerun_requested is False


def test_start_pass_takes_the_lease() -> None:
    started = start_pass(dirty(), run_id=RUN, owner="worker-7", now=T0, end=T0, full=True)
    assert started.lease_owner == "worker-7"
    assert started.lease_renewed == T0


def test_start_pass_keeps_table_bookkeeping() -> None:
    checkpoint = dirty(full_pass_owed=True)
    started = start_pass(checkpoint, run_id=RUN, owner="w1", now=T0, end=T0, full=True)
    assert started.table == "contact"
    assert started.watermark == checkpoint.watermark
    assert started.last_full_pass == checkpoint.last_full_pass
    assert started.manifest_hash == checkpoint.manifest_hash
    assert started.full_pass_owed is True


# -- advance: every transition of a pass ---------------------------------------------------------


def started_pass(full: bool = False) -> Checkpoint:
    return start_pass(hydrated(), run_id=RUN, owner="w1", now=T0, end=T0 - timedelta(minutes=15), full=full)


def mapping_done(checkpoint: Checkpoint) -> Checkpoint:
    """A pass whose window was read to its end (the watermark moved), still active."""
    return replace(checkpoint, watermark=checkpoint.window_end)


LATER = T0 + timedelta(minutes=1)
TRANSITIONS = [
    # (phase, full, more) -> (phase after, cursor after, retry cursor after, watermark moved, pass done)
    (Phase.RETRY, False, True, Phase.RETRY, None, "r-9", False, False),
    (Phase.RETRY, False, False, Phase.MAPPING, None, None, False, False),
    (Phase.RETRY, True, False, Phase.MAPPING, None, None, False, False),
    (Phase.MAPPING, False, True, Phase.MAPPING, "k-9", None, False, False),
    (Phase.MAPPING, True, True, Phase.MAPPING, "k-9", None, False, False),
    (Phase.MAPPING, False, False, Phase.DONE, None, None, True, True),
    (Phase.MAPPING, True, False, Phase.RECONCILE, None, None, True, False),
    (Phase.RECONCILE, True, True, Phase.RECONCILE, "k-9", None, False, False),
    (Phase.RECONCILE, True, False, Phase.DONE, None, None, False, True),
]


@pytest.mark.parametrize(
    ("phase", "full", "more", "after", "cursor", "retry_cursor", "moved", "done"), TRANSITIONS
)
def test_advance(
    phase: Phase,
    full: bool,
    more: bool,
    after: Phase,
    cursor: str | None,
    retry_cursor: str | None,
    moved: bool,
    done: bool,
) -> None:
    retrying = phase is Phase.RETRY
    checkpoint = replace(
        started_pass(full=full),
        phase=phase,
        cursor=None if retrying else "k-1",
        retry_cursor="r-1" if retrying else None,
    )
    key = "r-9" if phase is Phase.RETRY else "k-9"
    advanced = advance(checkpoint, PageOutcome(phase, key, more), now=LATER)
    assert advanced.phase is after
    assert (advanced.cursor, advanced.retry_cursor) == (cursor, retry_cursor)
    assert advanced.seq == checkpoint.seq  # a page never moves the step on
    assert (
        advanced.watermark == checkpoint.window_end and checkpoint.watermark != checkpoint.window_end
    ) is moved
    assert (not advanced.active) is done
    assert advanced.lease_renewed == (None if done else LATER)
    if done:
        assert advanced.lease_owner is None
        assert (advanced.last_full_pass == LATER) is full


def test_more_keeps_the_phase_and_moves_its_cursor() -> None:
    retry = advance(started_pass(), PageOutcome(Phase.RETRY, "r-5", True), now=LATER)
    assert (retry.phase, retry.retry_cursor, retry.cursor) == (Phase.RETRY, "r-5", None)
    mapping = advance(replace(retry, phase=Phase.MAPPING), PageOutcome(Phase.MAPPING, "k-5", True), now=LATER)
    assert (mapping.phase, mapping.cursor) == (Phase.MAPPING, "k-5")


def test_a_short_page_is_not_the_end_only_the_servers_word_is() -> None:
    """``more`` comes from the server's next link; nothing in ``advance`` looks at a page's size."""
    checkpoint = replace(started_pass(), phase=Phase.MAPPING)
    assert advance(checkpoint, PageOutcome(Phase.MAPPING, "k-1", True), now=LATER).active


@pytest.mark.parametrize(("phase", "page"), [(Phase.MAPPING, Phase.RECONCILE), (Phase.DONE, Phase.MAPPING)])
def test_advance_refuses_a_page_of_another_phase(phase: Phase, page: Phase) -> None:
    with pytest.raises(ValueError, match="cannot advance"):
        advance(replace(started_pass(), phase=phase), PageOutcome(page, None, False), now=T0)


def test_end_step_moves_to_the_next_step() -> None:
    checkpoint = replace(started_pass(), phase=Phase.MAPPING, cursor="k")
    ended = end_step(checkpoint, rerun_end=None, owner="w1", now=T0)
    assert (ended.seq, ended.phase, ended.cursor) == (1, Phase.MAPPING, "k")


def test_end_step_of_a_finished_pass_with_a_rerun_request_starts_an_incremental_pass() -> None:
    finished = finish_pass(
        replace(started_pass(full=True), rerun_requested=True, seq=4), now=T0, manifest_hash=HASH
    )
    rerun_end = T0 + timedelta(minutes=5)
    ended = end_step(finished, rerun_end=rerun_end, owner="w2", now=LATER)
    assert ended.active
    assert ended.phase is Phase.RETRY
    assert not ended.full
    assert (ended.seq, ended.sent_seq) == (5, 4)  # its first step's continuation is still to send
    assert (ended.run_id, ended.window_start, ended.window_end) == (RUN, finished.watermark, rerun_end)
    assert ended.rerun_requested is False


@pytest.mark.parametrize("rerun_end", [None, T0])
def test_end_step_without_a_request_or_without_a_window_only_moves_on(rerun_end: datetime | None) -> None:
    finished = finish_pass(started_pass(), now=T0, manifest_hash=HASH)
    assert end_step(finished, rerun_end=rerun_end, owner="w", now=T0) == replace(
        finished, seq=finished.seq + 1
    )
    asked = replace(finished, rerun_requested=True)
    assert not end_step(asked, rerun_end=None, owner="w", now=T0).active


def test_a_rerun_request_saved_meanwhile_is_told_apart_from_another_copy() -> None:
    ours = replace(started_pass(), phase=Phase.MAPPING, cursor="k")
    assert only_rerun_asked(replace(ours, rerun_requested=True), ours)
    assert not only_rerun_asked(ours, ours)  # nothing asked
    assert not only_rerun_asked(replace(ours, rerun_requested=True, lease_renewed=LATER), ours)  # a claim too
    assert not only_rerun_asked(replace(ours, rerun_requested=True, seq=1), ours)


def test_stored_phases_parse_and_idle_means_done() -> None:
    assert Phase.parse("idle") is Phase.DONE
    assert Phase.parse("reconcile") is Phase.RECONCILE
    with pytest.raises(ValueError, match="Mapping"):
        Phase.parse("Mapping")


def test_full_pass_reasons_are_named_and_worded() -> None:
    cause = full_pass_cause(hydrated(), now=T0, manifest_hash="other", full_every=WEEK, forced=False)
    assert cause is FullPassReason.CONFIGURATION
    assert reason(hydrated(), manifest_hash="other") == cause.message == "the table's configuration changed"
    assert {r.message for r in FullPassReason}
    assert len({r.message for r in FullPassReason}) == len(FullPassReason)


# -- finish_pass -----------------------------------------------------------------------------------


def test_finish_full_pass() -> None:
    checkpoint = mapping_done(
        replace(
            started_pass(full=True),
            phase=Phase.RECONCILE,
            cursor="x",
            retry_cursor="y",
            counters=Counters(pages=2),
        )
    )
    checkpoint = replace(checkpoint, full_pass_owed=True)
    later = T0 + timedelta(minutes=30)
    finished = finish_pass(checkpoint, now=later, manifest_hash="hash-2")
    assert finished.phase is Phase.DONE
    assert not finished.active
    assert finished.cursor is None
    assert finished.retry_cursor is None
    assert finished.lease_owner is None
    assert finished.lease_renewed is None
    assert finished.last_full_pass == later
    assert finished.full_pass_owed is False
    assert finished.manifest_hash == "hash-2"
    assert finished.watermark == checkpoint.window_end
    assert finished.counters == Counters(pages=2)  # kept for the task's outcome
    assert finished.seq == checkpoint.seq


def test_finish_incremental_pass_keeps_full_pass_bookkeeping() -> None:
    checkpoint = mapping_done(started_pass(full=False))
    owed = replace(checkpoint, full_pass_owed=True)
    finished = finish_pass(owed, now=T0 + timedelta(hours=1), manifest_hash=HASH)
    assert finished.last_full_pass == checkpoint.last_full_pass
    assert finished.full_pass_owed is True
    assert finished.phase is Phase.DONE
    assert finished.lease_owner is None


def test_finish_keeps_the_watermark_set_by_mapping_done() -> None:
    checkpoint = mapping_done(started_pass())
    finished = finish_pass(checkpoint, now=T0, manifest_hash=HASH)
    assert finished.watermark == checkpoint.window_end


def test_finish_keeps_an_existing_watermark() -> None:
    checkpoint = started_pass()  # mapping never reached its end: the old watermark stays
    finished = finish_pass(checkpoint, now=T0, manifest_hash=HASH)
    assert finished.watermark == checkpoint.watermark
    assert finished.watermark != checkpoint.window_end


def test_finish_sets_a_missing_watermark_to_the_window_end() -> None:
    first = start_pass(Checkpoint(table="lead"), run_id=RUN, owner="w", now=T0, end=T0, full=True)
    assert first.watermark is None
    finished = finish_pass(first, now=T0, manifest_hash=HASH)
    assert finished.watermark == T0


# -- lease_expired ---------------------------------------------------------------------------------

TTL = timedelta(minutes=10)


def test_idle_table_has_no_live_lease() -> None:
    assert lease_expired(hydrated(), now=T0, ttl=TTL) is True


def test_fresh_lease_is_live() -> None:
    checkpoint = started_pass()
    assert lease_expired(checkpoint, now=T0 + TTL - timedelta(seconds=1), ttl=TTL) is False


def test_lease_expires_after_ttl_without_progress() -> None:
    checkpoint = started_pass()
    assert lease_expired(checkpoint, now=T0 + TTL, ttl=TTL) is True


def test_progress_renews_the_lease() -> None:
    checkpoint = advance(started_pass(), PageOutcome(Phase.RETRY, "r", True), now=T0 + TTL)
    assert lease_expired(checkpoint, now=T0 + TTL + timedelta(minutes=1), ttl=TTL) is False


def test_active_pass_without_renewal_time_is_expired() -> None:
    checkpoint = hydrated(phase=Phase.MAPPING, lease_renewed=None)
    assert lease_expired(checkpoint, now=T0, ttl=TTL) is True


# -- Counters --------------------------------------------------------------------------------------


def test_counters_add_field_by_field() -> None:
    a = Counters(pages=1, rows_read=10, written=2, cleared=1, throttled_seconds=1.25)
    b = Counters(pages=2, rows_read=5, no_source=3, failed=4, throttled_seconds=0.75)
    assert a + b == Counters(
        pages=3, rows_read=15, written=2, no_source=3, cleared=1, failed=4, throttled_seconds=2.0
    )
    assert a + Counters() == a


def test_counters_to_dict_has_every_field() -> None:
    data = Counters(pages=4, conflicts=2).to_dict()
    assert set(data) == {f.name for f in fields(Counters)}
    assert (data["pages"], data["conflicts"], data["written"]) == (4, 2, 0)


def test_counters_round_trip() -> None:
    counters = Counters(pages=1, rows_read=2, written=3, invalid_keys=4, retried_ok=5, throttled_seconds=6.5)
    assert Counters.from_dict(counters.to_dict()) == counters


def test_counters_from_dict_ignores_unknown_keys_and_defaults_missing() -> None:
    assert Counters.from_dict({"pages": 2, "from_the_future": 9, "PartitionKey": "x"}) == Counters(pages=2)


@pytest.mark.parametrize("data", [None, {}])
def test_counters_from_nothing_are_zero(data: dict[str, object] | None) -> None:
    assert Counters.from_dict(data) == Counters()
