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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """Where a pass stands. A pass goes retry → mapping → (full passes only) reconcile → done.

    A guarded pass (``survey``) first walks the same phases writing nothing, then stops at ``guard``,
    where the relink guard (``relink_guard``) either starts it again live or holds it.
    """

    RETRY = "retry"
    """Re-deciding the rows of the table's retry list, a page at a time."""
    MAPPING = "mapping"
    """Paging the mapping rows of the pass's window."""
    RECONCILE = "reconcile"
    """A full pass re-checks every linked row and clears stale links."""
    DONE = "done"
    """No pass under way."""
    GUARD = "guard"
    """A survey is complete: the next step counts the table's links and decides to go on or hold."""
    HELD = "held"
    """The pass would change too many existing links: no lease, nothing written, until approved."""

    @classmethod
    def parse(cls, value: object) -> Phase:
        """A stored phase; ``idle`` is how earlier versions stored ``done``."""
        return cls.DONE if value == "idle" else cls(str(value))


class FullPassReason(StrEnum):
    """Why a pass must be full, each with the message the task records."""

    ASKED = "asked"
    FIRST = "first"
    OWED = "owed"
    CONFIGURATION = "configuration"
    SCHEDULED = "scheduled"

    @property
    def message(self) -> str:
        """The reason in words, as the task's details and the logs give it."""
        return _REASONS[self]


_REASONS = {
    FullPassReason.ASKED: "a full pass was asked for",
    FullPassReason.FIRST: "the table has no checkpoint yet",
    FullPassReason.OWED: "a full pass is owed (the lookup was just created or a reconcile was interrupted)",
    FullPassReason.CONFIGURATION: "the table's configuration changed",
    FullPassReason.SCHEDULED: "the scheduled full pass is due",
}


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
    relinked: int = 0
    """Rows whose existing link named another profile and is (or, in a dry run, would be) rewritten."""
    stale: int = 0
    failed: int = 0
    retried_ok: int = 0
    gave_up: int = 0
    """Rows taken off the retry list after ``retry_limit`` passes (the next full pass decides them anew)."""
    redone_steps: int = 0
    """Steps claimed again after an interruption (a crash, a redelivery, a throttled or failed step).
    Writes that landed before the interruption are found already correct when the step is redone, and
    their counts were never committed: see ``bounds``."""
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

    def bounds(self, *, plan: bool) -> CountBounds:
        """Which counts are bounds rather than exact figures.

        Counts are committed with the checkpoint after a page's writes land. A step interrupted after
        some writes landed is redone, and its rows are then found correct: they count as already correct,
        not as written (nor, in the reconcile, as stale and cleared, since their links are gone). So once
        a live pass redoes a step, those counts are lower bounds and ``already_correct`` an upper bound.
        A dry run writes nothing, so a redone step finds what it found before: its counts stay exact.
        """
        if plan or self.redone_steps == 0:
            return CountBounds()
        return CountBounds(lower=_LOWER_AFTER_REDO, upper=_UPPER_AFTER_REDO)

    def amount(self, name: str, bounds: CountBounds) -> str:
        """A count in words: ``1,234``, or ``at least 1,234`` / ``at most 1,234`` when it is a bound."""
        value = f"{getattr(self, name):,}"
        if name in bounds.lower:
            return f"at least {value}"
        if name in bounds.upper:
            return f"at most {value}"
        return value


_LOWER_AFTER_REDO = ("written", "cleared", "stale", "retried_ok")
_UPPER_AFTER_REDO = ("already_correct",)


@dataclass(frozen=True)
class CountBounds:
    """The counts of a pass that are lower or upper bounds (``Counters.bounds``); none when exact."""

    lower: tuple[str, ...] = ()
    upper: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        """Whether every count is exact."""
        return not self.lower and not self.upper

    def __or__(self, other: CountBounds) -> CountBounds:
        return CountBounds(
            lower=tuple(dict.fromkeys(self.lower + other.lower)),
            upper=tuple(dict.fromkeys(self.upper + other.upper)),
        )


Change = tuple[str, str, str | None]
"""A change to an existing link: (source row id, its current profile, the new one or ``None``: cleared).
Only GUIDs: a sample of changes names rows and profiles, never their contents."""
SAMPLE_SIZE = 10
"""Changes a pass keeps as its sample: enough for an operator to look some rows up, bounded."""


def merge_changes(kept: tuple[Change, ...], more: Sequence[Change]) -> tuple[Change, ...]:
    """The sample with further changes, each row once, at most ``SAMPLE_SIZE``."""
    seen = {change[0] for change in kept}
    merged = list(kept)
    for change in more:
        if len(merged) >= SAMPLE_SIZE:
            break
        if change[0] not in seen:
            seen.add(change[0])
            merged.append(change)
    return tuple(merged)


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
    phase: Phase = Phase.DONE
    full: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    cursor: str | None = None
    retry_cursor: str | None = None
    lease_owner: str | None = None
    lease_renewed: datetime | None = None
    rerun_requested: bool = False
    step_claimed: bool = False
    """Whether a delivery claimed the current step already: a second claim redoes it (``claim_step``)."""
    counters: Counters = field(default_factory=Counters)
    survey: bool = False
    """The pass is counting what it would change, writing nothing (the relink guard's first walk)."""
    changes: tuple[Change, ...] = ()
    """A sample of the pass's changes to existing links, at most ``SAMPLE_SIZE``."""

    @property
    def active(self) -> bool:
        """Whether a pass is under way (a held pass is not: it has no lease and no message)."""
        return self.phase not in (Phase.DONE, Phase.HELD)


def window_end(server_now: datetime, settle: timedelta) -> datetime:
    """The end of a pass's window: the server's time minus the settle period (never the host clock)."""
    return server_now - settle


def full_pass_cause(
    checkpoint: Checkpoint, *, now: datetime, manifest_hash: str, full_every: timedelta, forced: bool
) -> FullPassReason | None:
    """Why the next pass must be full, or ``None`` when an incremental pass is enough."""
    if forced:
        return FullPassReason.ASKED
    if checkpoint.watermark is None:
        return FullPassReason.FIRST
    if checkpoint.full_pass_owed:
        return FullPassReason.OWED
    if checkpoint.manifest_hash != manifest_hash:
        return FullPassReason.CONFIGURATION
    if checkpoint.last_full_pass is None or now - checkpoint.last_full_pass >= full_every:
        return FullPassReason.SCHEDULED
    return None


def full_pass_reason(
    checkpoint: Checkpoint, *, now: datetime, manifest_hash: str, full_every: timedelta, forced: bool
) -> str | None:
    """``full_pass_cause`` in words (what the timer reports), or ``None``."""
    cause = full_pass_cause(
        checkpoint, now=now, manifest_hash=manifest_hash, full_every=full_every, forced=forced
    )
    return None if cause is None else cause.message


def start_pass(
    checkpoint: Checkpoint,
    *,
    run_id: str,
    owner: str,
    now: datetime,
    end: datetime,
    full: bool,
    seq: int = 0,
    survey: bool = False,
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
        phase=Phase.RETRY,
        full=full,
        window_start=None if full else checkpoint.watermark,
        window_end=end,
        cursor=None,
        retry_cursor=None,
        lease_owner=owner,
        lease_renewed=now,
        rerun_requested=False,
        step_claimed=False,
        counters=Counters(),
        survey=survey,
        changes=(),
    )


def claim_step(checkpoint: Checkpoint, *, owner: str, now: datetime) -> Checkpoint:
    """The checkpoint a delivery saves to claim the current step: the lease renewed, the step claimed.

    A step claimed before (its first delivery crashed, lost its lease, was throttled or failed) is being
    redone, and that is counted: writes the earlier attempt landed are not in the counts (``bounds``).
    """
    redone = Counters(redone_steps=1) if checkpoint.step_claimed else Counters()
    return replace(
        checkpoint,
        lease_renewed=now,
        lease_owner=owner,
        step_claimed=True,
        counters=checkpoint.counters + redone,
    )


@dataclass(frozen=True)
class PageOutcome:
    """What reading one page of a phase found out: where it ended, and whether the server has more."""

    phase: Phase
    cursor: str | None
    """The last key read (mapping, reconcile) or the last retry-list entry handled (retry)."""
    more: bool
    """Whether more rows follow: the server gave a next link, or the retry list has further entries.
    Never guessed from a page's size, which a server may keep below the size asked for."""


def advance(checkpoint: Checkpoint, outcome: PageOutcome, *, now: datetime) -> Checkpoint:
    """The checkpoint after a page: the same phase further on, or the next phase, or the pass done.

    Counters are added when the page's writes have landed (the sequencer's commit), not here. The
    step number is unchanged: a step may cover several pages; ``end_step`` moves it on.
    """
    if checkpoint.phase is Phase.DONE or outcome.phase is not checkpoint.phase:
        raise ValueError(f"a {outcome.phase} page cannot advance a checkpoint in phase {checkpoint.phase}")
    renewed = replace(checkpoint, lease_renewed=now)
    if outcome.phase is Phase.RETRY:
        if outcome.more:
            return replace(renewed, retry_cursor=outcome.cursor)
        return replace(renewed, phase=Phase.MAPPING, cursor=None, retry_cursor=None)
    if outcome.more:
        return replace(renewed, cursor=outcome.cursor)
    if checkpoint.survey:  # nothing was written: the watermark stays, the guard decides
        more = outcome.phase is Phase.MAPPING and renewed.full
        return replace(renewed, cursor=None, phase=Phase.RECONCILE if more else Phase.GUARD)
    if outcome.phase is Phase.MAPPING:
        mapped = replace(renewed, watermark=renewed.window_end, cursor=None)  # the window is fully read
        if mapped.full:
            return replace(mapped, phase=Phase.RECONCILE)
        return finish_pass(mapped, now=now, manifest_hash=mapped.manifest_hash or "")
    return finish_pass(renewed, now=now, manifest_hash=renewed.manifest_hash or "")


def end_step(
    checkpoint: Checkpoint, *, rerun_end: datetime | None, owner: str, now: datetime, survey: bool = False
) -> Checkpoint:
    """The checkpoint at the end of a step: the next step number, which its continuation carries.

    When the step finished the pass and a rerun was asked for meanwhile (``rerun_requested``), an
    incremental pass starts in the same run, window ending at ``rerun_end`` (``None``: no rerun, as in
    a dry run), with its first step's continuation still to send; ``survey``: the rerun is surveyed
    first, as any live pass of a linked table (the relink guard).
    """
    ended = replace(checkpoint, seq=checkpoint.seq + 1, step_claimed=False)
    if ended.active or not ended.rerun_requested or rerun_end is None or ended.run_id is None:
        return ended
    restarted = start_pass(
        ended,
        run_id=ended.run_id,
        owner=owner,
        now=now,
        end=rerun_end,
        full=False,
        seq=ended.seq,
        survey=survey,
    )
    return replace(restarted, sent_seq=restarted.seq - 1)


def finish_pass(checkpoint: Checkpoint, *, now: datetime, manifest_hash: str) -> Checkpoint:
    """The checkpoint once a pass is complete: idle, lease released, full-pass bookkeeping updated."""
    return replace(
        checkpoint,
        phase=Phase.DONE,
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


def only_rerun_asked(stored: Checkpoint, ours: Checkpoint) -> bool:
    """Whether the checkpoint saved meanwhile is ours with nothing but a rerun request added.

    Another run that finds the table busy saves ``rerun_requested`` on the running pass's checkpoint.
    The running step then meets a changed ETag; it must merge the request and carry on, not stop as if
    another copy of its message had taken over (which changes the lease or the step).
    """
    return stored.rerun_requested and replace(stored, rerun_requested=ours.rerun_requested) == ours
