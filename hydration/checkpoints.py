"""A table's checkpoint and the arithmetic of passes, windows and leases, as pure functions.

The checkpoint is the one record that says where a table's hydration stands. It is saved with an ETag,
so only the worker holding the current step can move it (see ``worker``). Everything here is pure:
values in, values out, unit-tested without storage or clocks.

A pass reads the mapping rows in the closed window ``[window_start, window_end)``: ``window_start`` is
the watermark (absent on a full pass), ``window_end`` the server's time minus the settle period, fixed
when the pass starts. When the mapping phase ends, the watermark becomes ``window_end``: rows changed
later belong to the next pass, and rows changed earlier but not yet visible were covered by the settle
period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

PHASES = ("idle", "retry", "mapping", "reconcile")


@dataclass(frozen=True)
class Counters:
    """What a pass did, accumulated step by step.

    Saved with the checkpoint, in the same write that moves the step on, so a redone step is not
    counted twice.
    """

    pages: int = 0
    rows_read: int = 0
    written: int = 0
    already_correct: int = 0
    no_source: int = 0
    no_profile: int = 0
    conflicts: int = 0
    invalid_keys: int = 0
    cleared: int = 0
    stale: int = 0
    failed: int = 0
    retried_ok: int = 0
    throttled_seconds: float = 0.0

    def __add__(self, other: Counters) -> Counters:
        return Counters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for storage and status answers."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Counters:
        """Read counters saved by ``to_dict``; unknown keys are ignored, missing ones are zero."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class Checkpoint:
    """Where one table's hydration stands."""

    table: str
    watermark: datetime | None = None
    last_full_pass: datetime | None = None
    manifest_hash: str | None = None
    full_pass_owed: bool = False
    run_id: str | None = None
    seq: int = 0
    sent_seq: int = 0
    phase: str = "idle"
    full: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    cursor: str | None = None
    retry_cursor: str | None = None
    lease_owner: str | None = None
    lease_renewed: datetime | None = None
    rerun_requested: bool = False
    counters: Counters = field(default_factory=Counters)

    @property
    def active(self) -> bool:
        """Whether a pass is under way."""
        return self.phase != "idle"


def window_end(server_now: datetime, settle: timedelta) -> datetime:
    """The end of a pass's window: the server's time minus the settle period (never the host clock)."""
    return server_now - settle


def full_pass_reason(
    checkpoint: Checkpoint, *, now: datetime, manifest_hash: str, full_every: timedelta, forced: bool
) -> str | None:
    """Why the next pass must be full, or ``None`` when an incremental pass is enough."""
    if forced:
        return "a full pass was asked for"
    if checkpoint.watermark is None:
        return "the table has no checkpoint yet"
    if checkpoint.full_pass_owed:
        return "a full pass is owed (the lookup was just created or a reconcile was interrupted)"
    if checkpoint.manifest_hash != manifest_hash:
        return "the table's configuration changed"
    if checkpoint.last_full_pass is None or now - checkpoint.last_full_pass >= full_every:
        return "the scheduled full pass is due"
    return None


def start_pass(
    checkpoint: Checkpoint, *, run_id: str, owner: str, now: datetime, end: datetime, full: bool, seq: int = 0
) -> Checkpoint:
    """The checkpoint at step ``seq`` (0 for a new run) of a new pass for ``run_id``.

    A rerun asked for while a pass was running starts its pass in the same run, continuing the step
    numbers, so a late duplicate of an earlier step can never be mistaken for a current one.
    """
    if not full and checkpoint.watermark is not None and end < checkpoint.watermark:
        end = checkpoint.watermark  # the server clock never moves a window backwards
    return replace(
        checkpoint,
        run_id=run_id,
        seq=seq,
        sent_seq=seq,
        phase="retry",
        full=full,
        window_start=None if full else checkpoint.watermark,
        window_end=end,
        cursor=None,
        retry_cursor=None,
        lease_owner=owner,
        lease_renewed=now,
        rerun_requested=False,
        counters=Counters(),
    )


def page_done(
    checkpoint: Checkpoint,
    *,
    phase: str,
    cursor: str | None,
    retry_cursor: str | None,
    counters: Counters,
    now: datetime,
) -> Checkpoint:
    """The checkpoint after one page: where to continue, counters so far, the lease renewed.

    ``cursor`` is the last key read in the mapping or reconcile phase (pages continue after it),
    ``retry_cursor`` the last retry-list entry handled. The step number is unchanged: a step may cover
    several pages and saves the checkpoint after each, and a redelivery of its message claims the same
    step number and resumes after the last saved page. ``next_step`` ends the step.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return replace(
        checkpoint,
        phase=phase,
        cursor=cursor,
        retry_cursor=retry_cursor,
        counters=checkpoint.counters + counters,
        lease_renewed=now,
    )


def next_step(checkpoint: Checkpoint) -> Checkpoint:
    """The checkpoint at the end of a step: the next step number, which its continuation carries."""
    return replace(checkpoint, seq=checkpoint.seq + 1)


def mapping_done(checkpoint: Checkpoint) -> Checkpoint:
    """The mapping window is fully read: the watermark moves to the window's end."""
    return replace(checkpoint, watermark=checkpoint.window_end)


def finish_pass(checkpoint: Checkpoint, *, now: datetime, manifest_hash: str) -> Checkpoint:
    """The checkpoint once a pass is complete: idle, lease released, full-pass bookkeeping updated."""
    return replace(
        checkpoint,
        phase="idle",
        cursor=None,
        retry_cursor=None,
        watermark=checkpoint.window_end if checkpoint.watermark is None else checkpoint.watermark,
        last_full_pass=now if checkpoint.full else checkpoint.last_full_pass,
        full_pass_owed=False if checkpoint.full else checkpoint.full_pass_owed,
        manifest_hash=manifest_hash,
        lease_owner=None,
        lease_renewed=None,
    )


def lease_expired(checkpoint: Checkpoint, *, now: datetime, ttl: timedelta) -> bool:
    """Whether an active pass made no progress for ``ttl`` (its chain is presumed lost)."""
    if not checkpoint.active:
        return True
    return checkpoint.lease_renewed is None or now - checkpoint.lease_renewed >= ttl
