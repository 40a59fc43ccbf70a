"""One step of a pass: read → decide → write → commit, page after page, in one place.

The worker claims a step and hands it here. For each page the phase's reader reads it (and what
deciding it needs), ``decision.decide`` says what to write, the lane's writer submits the writes, and
``checkpoints.advance`` says where the pass stands once they have landed. Pages are pipelined: the next
page is read while the previous page's writes are in flight (``read_ahead`` pages, one more per further
application user), and the reconcile's pages are decided in the background while the next is queried.

What holds page by page:

- the checkpoint is saved (ETag-conditional) after each page's writes have landed, in page order, so a
  crash loses at most the pages whose writes were in flight, redone idempotently;
- a save that meets another ETag re-reads the checkpoint: a rerun request from another run is merged
  and the step carries on; anything else means another copy of the message took over, and this copy
  stops, sending nothing further;
- pages in flight together never write the same row: a mapping page leaves every row a later page of
  the window names again to that page, reconcile and retry pages hold disjoint keys, and the pipeline
  drains where the phase changes;
- an error stops the step: writes not yet sent are dropped, those in flight are waited for, and the
  error goes to the worker;
- a survey (the relink guard's first walk) ends its step at phase ``guard``: the guard's decision is a
  step of its own, which the worker takes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from .checkpoints import Checkpoint, Counters, Phase, advance, end_step, merge_changes, only_rerun_asked
from .clock import Clock
from .decision import LinkColumns, PageKind, RetryLimit, Snapshot, decide
from .link_writes import DecidedLater, Landed, LinkWriter, PendingWrites
from .log_context import in_context
from .readers import Page, Prefetched
from .storage.errors import ConflictError

Landing = PendingWrites | DecidedLater


class PageReader(Protocol):
    """A phase's reader (``readers``)."""

    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        """The next page of the checkpoint's phase (``first``: its rows, read already)."""
        ...


class CheckpointBook(Protocol):
    """Loads and saves one lane's checkpoints (``lanes.Lane``)."""

    def load(self, table: str) -> tuple[Checkpoint, str]:
        """The checkpoint and its ETag."""
        ...

    def save(self, checkpoint: Checkpoint, etag: str) -> str:
        """Save against the ETag; ``ConflictError`` if it changed."""
        ...

    def record(self, table: str, landed: Landed, *, resolve: bool, now: datetime) -> None:
        """Put a page's retries on the retry list, and take resolved rows off it (``resolve``)."""
        ...


@dataclass(frozen=True)
class StepLimits:
    """How far one step goes, and how far it reads ahead."""

    seconds: float
    pages: int | None
    read_ahead: int
    users: int
    retry_limit: int = 50

    def ahead(self, phase: Phase) -> int:
        """Pages read past the oldest page whose writes are in flight.

        A page is about five chunks and a user keeps four in flight, so each further user needs about
        one more page queued; the reconcile writes little, so it needs no more.
        """
        if self.read_ahead <= 0:
            return 0
        return self.read_ahead if phase is Phase.RECONCILE else self.read_ahead + self.users - 1


@dataclass
class _InFlight:
    after: Checkpoint
    read: Counters
    landing: Landing | None
    resolve: bool


class Sequencer:
    """Runs the pages of one step of one table's pass."""

    def __init__(
        self,
        *,
        readers: Mapping[Phase, PageReader],
        writer: LinkWriter,
        book: CheckpointBook,
        columns: LinkColumns,
        limits: StepLimits,
        clock: Clock,
        owner: str,
        rerun_end: Callable[[], datetime] | None,
        rerun_survey: bool = False,
    ) -> None:
        self.readers = readers
        self.writer = writer
        self.book = book
        self.columns = columns
        self.limits = limits
        self.clock = clock
        self.owner = owner
        self.rerun_end = rerun_end
        """The window end of a requested rerun's pass (the server's time minus settle); ``None``: a
        lane that does not rerun (a dry run)."""
        self.rerun_survey = rerun_survey
        """Whether a requested rerun's pass is surveyed first (the relink guard is on)."""
        self._stop = threading.Event()
        """Set by the first failed write of the step: none of its writes is sent after it."""

    def run(self, checkpoint: Checkpoint, etag: str) -> tuple[Checkpoint, str] | None:
        """Do the step's pages from the claimed ``checkpoint``.

        Returns the last saved checkpoint and its ETag, or ``None`` when another copy of the message
        took the table over (this copy then sends nothing).
        """
        checks = ThreadPoolExecutor(2, thread_name_prefix="hydration-check")
        pending: deque[_InFlight] = deque()
        try:
            return self._pages(checkpoint, etag, pending, checks)
        except ConflictError:
            return None
        finally:
            for left in pending:
                if left.landing is not None:
                    left.landing.cancel()
            checks.shutdown(wait=True)

    def _pages(
        self, checkpoint: Checkpoint, etag: str, pending: deque[_InFlight], checks: ThreadPoolExecutor
    ) -> tuple[Checkpoint, str]:
        deadline = self.clock.monotonic() + self.limits.seconds
        planned = committed = checkpoint
        pages, first = 0, None
        while True:
            phase = planned.phase
            page = self.readers[phase].read(
                planned, first if first is not None and first.matches(planned) else None
            )
            first = page.take_following()
            planned = advance(planned, page.outcome, now=self.clock.now())
            if page.read.pages:
                pending.append(
                    _InFlight(planned, page.read, self._write(page, checks), page.kind is PageKind.RETRY)
                )
                pages += 1
            stop = (
                not planned.active
                or planned.phase is Phase.GUARD
                or self.clock.monotonic() >= deadline
                or (self.limits.pages is not None and pages >= self.limits.pages)
            )
            if stop and (not pending or pending[-1].after is not planned):
                pending.append(_InFlight(planned, Counters(), None, resolve=False))
            drain = stop or planned.phase is not phase
            while pending and (drain or len(pending) > self.limits.ahead(phase)):
                committed, etag = self._commit(pending.popleft(), committed, etag, final=stop and not pending)
            if stop:
                return committed, etag

    def _write(self, page: Page, checks: ThreadPoolExecutor) -> Landing | None:
        """Decide the page and submit its writes (in the background when its reads are)."""
        check = page.check
        if check is not None:
            return DecidedLater(checks.submit(in_context(lambda: self._decide_and_submit(page, check()))))
        if page.snapshot is None:
            return None
        return self._decide_and_submit(page, page.snapshot)

    def _decide_and_submit(self, page: Page, snapshot: Snapshot) -> PendingWrites:
        retry = RetryLimit(self.limits.retry_limit, page.attempts)
        decision = decide(page.kind, page.source_ids, snapshot, self.columns, retry)
        return self.writer.submit(page.kind, decision, stop=self._stop)

    def _commit(
        self, item: _InFlight, committed: Checkpoint, etag: str, *, final: bool
    ) -> tuple[Checkpoint, str]:
        """Wait for a page's writes, record its retries, and save the checkpoint after it."""
        landed = item.landing.result() if item.landing is not None else None
        now = self.clock.now()
        if landed is not None:
            self.book.record(item.after.table, landed, resolve=item.resolve, now=now)
        counters = committed.counters + item.read + (landed.counters if landed is not None else Counters())
        base = replace(
            item.after,
            counters=counters,
            rerun_requested=committed.rerun_requested or item.after.rerun_requested,
            changes=merge_changes(committed.changes, landed.changes if landed is not None else ()),
        )
        for _ in range(3):
            saved = self._end_step(base, now) if final else base
            try:
                return saved, self.book.save(saved, etag)
            except ConflictError:
                stored, stored_etag = self.book.load(base.table)
                if not only_rerun_asked(stored, committed):
                    raise
                base, committed, etag = replace(base, rerun_requested=True), stored, stored_etag
        raise ConflictError(f"the checkpoint of {base.table} keeps changing; stopping this step")

    def _end_step(self, checkpoint: Checkpoint, now: datetime) -> Checkpoint:
        wants_rerun = not checkpoint.active and checkpoint.rerun_requested and self.rerun_end is not None
        rerun_end = self.rerun_end() if wants_rerun and self.rerun_end is not None else None
        return end_step(checkpoint, rerun_end=rerun_end, owner=self.owner, now=now, survey=self.rerun_survey)
