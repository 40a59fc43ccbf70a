"""Checkpoint arithmetic: windows, full-pass reasons, passes, steps, leases and counters (pure, no clocks)."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from hydration.checkpoints import (
    PHASES,
    Checkpoint,
    Counters,
    finish_pass,
    full_pass_reason,
    lease_expired,
    mapping_done,
    next_step,
    page_done,
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


# -- page_done and next_step ---------------------------------------------------------------------


def started_pass(full: bool = False) -> Checkpoint:
    return start_pass(hydrated(), run_id=RUN, owner="w1", now=T0, end=T0 - timedelta(minutes=15), full=full)


def test_a_page_keeps_the_step_and_next_step_moves_to_the_next_one() -> None:
    later = T0 + timedelta(minutes=1)
    paged = page_done(
        started_pass(), phase="mapping", cursor="key-9", retry_cursor="r-3", counters=Counters(), now=later
    )
    assert paged.seq == 0
    stepped = next_step(paged)
    assert stepped.seq == 1
    assert stepped.phase == "mapping"
    assert stepped.cursor == "key-9"
    assert stepped.retry_cursor == "r-3"
    assert stepped.lease_renewed == later


def test_pages_accumulate_counters() -> None:
    checkpoint = started_pass()
    for i in range(3):
        checkpoint = page_done(
            checkpoint,
            phase="mapping",
            cursor=f"k{i}",
            retry_cursor=None,
            counters=Counters(pages=1, rows_read=100, written=7, throttled_seconds=0.5),
            now=T0,
        )
        checkpoint = next_step(checkpoint)
    assert checkpoint.seq == 3
    assert checkpoint.counters == Counters(pages=3, rows_read=300, written=21, throttled_seconds=1.5)


@pytest.mark.parametrize("phase", PHASES)
def test_page_done_accepts_every_phase(phase: str) -> None:
    assert page_done(started_pass(), phase=phase, cursor=None, retry_cursor=None, counters=Counters(), now=T0)


@pytest.mark.parametrize("phase", ["", "Mapping", "done", "finished", "mapping "])
def test_page_done_refuses_an_unknown_phase(phase: str) -> None:
    checkpoint = started_pass()
    with pytest.raises(ValueError, match="unknown phase"):
        page_done(checkpoint, phase=phase, cursor=None, retry_cursor=None, counters=Counters(), now=T0)


# -- mapping_done ----------------------------------------------------------------------------------


def test_mapping_done_moves_the_watermark_to_the_window_end() -> None:
    checkpoint = started_pass()
    assert checkpoint.watermark != checkpoint.window_end
    done = mapping_done(checkpoint)
    assert done.watermark == checkpoint.window_end
    assert done.phase == checkpoint.phase
    assert done.seq == checkpoint.seq


# -- finish_pass -----------------------------------------------------------------------------------


def test_finish_full_pass() -> None:
    checkpoint = mapping_done(
        page_done(
            started_pass(full=True),
            phase="reconcile",
            cursor="x",
            retry_cursor="y",
            counters=Counters(pages=2),
            now=T0,
        )
    )
    checkpoint = replace(checkpoint, full_pass_owed=True)
    later = T0 + timedelta(minutes=30)
    finished = finish_pass(checkpoint, now=later, manifest_hash="hash-2")
    assert finished.phase == "idle"
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
    assert finished.phase == "idle"
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
    checkpoint = page_done(
        started_pass(), phase="mapping", cursor=None, retry_cursor=None, counters=Counters(), now=T0 + TTL
    )
    assert lease_expired(checkpoint, now=T0 + TTL + timedelta(minutes=1), ttl=TTL) is False


def test_active_pass_without_renewal_time_is_expired() -> None:
    checkpoint = hydrated(phase="mapping", lease_renewed=None)
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
