"""One step's pages, pipelined: the next page is read while the previous page's writes are in flight.

A page's reads (the mapping page, then one ``$batch`` of the rows' links, mapping and profiles) take a
few seconds; its writes take longer. Done one after the other, writes would wait for every read. Here
a step reads and decides page N+1 while page N's writes are in flight (``LinkSettings.read_ahead``
pages ahead, one more per further application user), and goes on for several pages while its time budget
(``step_seconds``) lasts. The reconcile's pages are decided in the background while the next page is
read, so its chain of requests is only the page queries.

What stays as it was, page by page:

- the checkpoint is saved (ETag-conditional) after each page's writes have landed, in page order, so a
  crash loses at most the pages whose writes were in flight, redone idempotently; a save that meets
  another ETag means another copy of the message took over: this copy stops, sending nothing further;
- pages in flight together never write the same row: a mapping page leaves every row that a later page
  of the window names again to that page (the same rule that makes a dry run exact); reconcile pages
  and retry-list pages hold disjoint keys by construction; and the pipeline drains (waits for every
  write) where the phase changes, so the reconcile never reads links still being written;
- an error (a long throttle, a transient or permanent failure) stops the step: writes not yet sent are
  dropped, those in flight are waited for, and the error goes to the worker, which re-enqueues,
  retries or fails the step; its redelivery resumes after the last saved page.

Every save keeps the step number (``checkpoints.page_done``); the last page's save also moves it on
(``finalize``, with ``checkpoints.next_step``), after which the worker sends the continuation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .checkpoints import Checkpoint, Counters, finish_pass, mapping_done, page_done
from .dataverse import odata
from .dataverse.errors import FatalError
from .linking import DeferredWrites, Linker, LinkSettings, PendingWrites, StepResult
from .state import StateStore
from .storage.errors import ConflictError

Landing = PendingWrites | DeferredWrites
"""A page's writes in flight: decided already (``PendingWrites``), or decided in the background."""
Record = Callable[[StepResult, bool], None]
"""Records a page's retry-list changes: ``(result, resolve)``."""


@dataclass
class Page:
    """One page read and decided; its writes may still be in flight."""

    phase: str
    """The phase the page was read in."""
    after: Checkpoint
    """The checkpoint once the page's writes have landed (its counters are filled in at the save)."""
    read: Counters
    pending: Landing | None
    resolve: bool
    """Whether the page's rows leave the retry list when they no longer need a retry (the retry phase)."""
    final: bool = False
    prefetched: Prefetched | None = None
    """The next page, when it was read on its own (the reconcile's, read while this page is checked)."""

    def take_next(self) -> Prefetched | None:
        """The next page of the same phase, when this page's ``$batch`` read it (or it was read alone).

        The page lets go of those rows: it may wait for its writes while several later pages are read.
        """
        following, self.prefetched = self.prefetched, None
        if following is not None:
            return following
        if not isinstance(self.pending, PendingWrites) or self.pending.decision.next_page is None:
            return None
        rows, self.pending.decision.next_page = self.pending.decision.next_page, None
        return Prefetched(self.after.phase, self.after.cursor, rows)


@dataclass(frozen=True)
class Prefetched:
    """Rows of a phase's page after ``cursor``, read ahead in the previous page's ``$batch``."""

    phase: str
    cursor: str | None
    rows: list[dict[str, Any]]

    def rows_for(self, checkpoint: Checkpoint) -> list[dict[str, Any]] | None:
        """The rows, if they are the page ``checkpoint`` is at."""
        if self.phase == checkpoint.phase and self.cursor == checkpoint.cursor:
            return self.rows
        return None


class StepPipeline:
    """Runs the pages of one step for one table's pass."""

    def __init__(
        self,
        *,
        linker: Linker,
        state: StateStore,
        settings: LinkSettings,
        plan: bool,
        record: Record,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.linker = linker
        self.state = state
        self.settings = settings
        self.plan = plan
        self._record = record
        self._clock = clock
        self._monotonic = monotonic
        self._stop = threading.Event()
        """Set by the first failed write of the step: none of its writes is sent after it."""
        self._checks = ThreadPoolExecutor(2, thread_name_prefix="hydration-check")
        """Decides the reconcile's pages in the background, two at a time: a check takes about twice as
        long as reading the next page, and each holds a page's mapping and profiles while it reads them.
        One ``run`` per pipeline, shut down after it."""

    def run(
        self, checkpoint: Checkpoint, etag: str, finalize: Callable[[Checkpoint], Checkpoint]
    ) -> tuple[Checkpoint, str] | None:
        """Do the step's pages from the claimed ``checkpoint``.

        Returns the last saved checkpoint and its ETag, or ``None`` when another copy of the message
        took the table over (this copy then sends nothing). ``finalize`` turns the last page's
        checkpoint into the step's end (the next step number, and a rerun's new pass); it is saved in
        the same write.
        """
        deadline = self._monotonic() + self.settings.step_seconds
        pending: deque[Page] = deque()
        planned, committed = checkpoint, checkpoint
        pages = 0
        prefetched: Prefetched | None = None
        try:
            while True:
                page = self._read(planned, prefetched)
                prefetched = page.take_next()
                pending.append(page)
                pages += 1
                planned = page.after
                stop = (
                    not planned.active
                    or self._monotonic() >= deadline
                    or (self.settings.step_pages is not None and pages >= self.settings.step_pages)
                )
                if stop:
                    pending[-1].final = True
                drain = stop or planned.phase != page.phase
                while pending and (drain or len(pending) > self._ahead(page.phase)):
                    committed, etag = self._commit(pending.popleft(), committed, etag, finalize)
                if stop:
                    return committed, etag
        except ConflictError:
            return None
        finally:
            for left in pending:
                if left.pending is not None:
                    left.pending.cancel()
            self._checks.shutdown(wait=True)

    def _ahead(self, phase: str) -> int:
        """Pages read ahead in a phase.

        The reconcile writes little, so further users need no more of its pages queued (each holds its
        rows while it is checked).
        """
        return max(0, self.settings.read_ahead) if phase == "reconcile" else self._read_ahead

    @property
    def _read_ahead(self) -> int:
        """Pages read ahead: ``read_ahead``, and one more per further application user of the pool.

        A page is about five chunks and a user keeps four in flight, so each further user needs about one
        more page queued for its slots never to idle; each page in the pipeline costs memory.
        """
        if self.settings.read_ahead <= 0:
            return 0
        return self.settings.read_ahead + len(self.linker.pool.clients) - 1

    def _commit(
        self, page: Page, committed: Checkpoint, etag: str, finalize: Callable[[Checkpoint], Checkpoint]
    ) -> tuple[Checkpoint, str]:
        """Wait for a page's writes, record its retries, and save the checkpoint after it."""
        result = page.pending.result() if page.pending is not None else StepResult()
        self._record(result, page.resolve)
        saved = replace(page.after, counters=committed.counters + page.read + result.counters)
        if page.final:
            saved = finalize(saved)
        return saved, self.state.save_checkpoint(saved, etag, plan=self.plan)

    def _read(self, checkpoint: Checkpoint, prefetched: Prefetched | None) -> Page:
        """Read and decide the next page of the checkpoint's phase, and submit its writes.

        The page's rows come from ``prefetched`` when the previous page's ``$batch`` read them, and
        this page's ``$batch`` reads the next page's in turn: a page then costs one request.
        """
        linker, size, now = self.linker, self.settings.page_size, self._clock()
        if checkpoint.phase == "retry":
            entries = self.state.retry_entries(checkpoint.table, after=checkpoint.retry_cursor, limit=size)
            if entries:
                ids = [key for key, _ in entries]
                pending = linker.submit(linker.decide_rows(ids, retry_phase=True), stop=self._stop)
                after = page_done(
                    checkpoint,
                    phase="retry" if len(entries) >= size else "mapping",
                    cursor=None,
                    retry_cursor=ids[-1],
                    counters=Counters(),
                    now=now,
                )
                return Page("retry", after, Counters(pages=1, rows_read=len(ids)), pending, resolve=True)
            checkpoint = replace(checkpoint, phase="mapping")
        if checkpoint.phase == "mapping":
            return self._mapping_page(checkpoint, now, prefetched)
        if checkpoint.phase == "reconcile":
            rows = prefetched.rows_for(checkpoint) if prefetched is not None else None
            if rows is None:
                rows, last = linker.linked_page(after=checkpoint.cursor)
            else:
                last = linker.is_last(rows)
            key = linker.target.table.primary_id
            cursor = odata.normalize_guid(rows[-1][key]) if rows else checkpoint.cursor
            writes: Landing | None = None
            if rows:
                page_rows, stop = rows, self._stop
                writes = DeferredWrites(
                    self._checks.submit(lambda: linker.submit(linker.decide_reconcile(page_rows), stop=stop))
                )
            following = None
            if rows and not last and cursor and self._ahead("reconcile"):  # read while this one is checked
                following = Prefetched("reconcile", cursor, linker.linked_page(after=cursor)[0])
            after = page_done(
                checkpoint, phase="reconcile", cursor=cursor, retry_cursor=None, counters=Counters(), now=now
            )
            if last:
                after = finish_pass(after, now=now, manifest_hash=checkpoint.manifest_hash or "")
            read = Counters(pages=1, rows_read=len(rows))
            return Page("reconcile", after, read, writes, resolve=False, prefetched=following)
        raise FatalError(f"the checkpoint of {checkpoint.table} is in an unknown phase {checkpoint.phase!r}")

    def _mapping_page(self, checkpoint: Checkpoint, now: datetime, prefetched: Prefetched | None) -> Page:
        linker = self.linker
        start, end = checkpoint.window_start, checkpoint.window_end
        assert end is not None
        rows = prefetched.rows_for(checkpoint) if prefetched is not None else None
        if rows is None:
            rows, last = linker.mapping_page(start=start, end=end, after=checkpoint.cursor)
        else:
            last = linker.is_last(rows)
        ids, invalid = source_ids(rows)
        later = following = None
        if rows and not last:
            last_key = str(rows[-1]["msdynci_alternatekeyid"])
            later = linker.window_filter(start, end, last_key)
            following = linker.mapping_page_part(start=start, end=end, after=last_key)
        likely = [p for r in rows if (p := odata.try_guid(r.get("_msdynci_lookupfield_customer_value")))]
        pending: PendingWrites | None = None
        if ids:
            decision = linker.decide_rows(ids, later=later, likely_profiles=likely, next_page=following)
            pending = linker.submit(decision, stop=self._stop)
        read = Counters(pages=1, rows_read=len(rows), invalid_keys=invalid)
        cursor = rows[-1]["msdynci_alternatekeyid"] if rows else checkpoint.cursor
        if not last:
            after = page_done(
                checkpoint, phase="mapping", cursor=cursor, retry_cursor=None, counters=Counters(), now=now
            )
            return Page("mapping", after, read, pending, resolve=False)
        after = mapping_done(
            page_done(
                checkpoint, phase="reconcile", cursor=None, retry_cursor=None, counters=Counters(), now=now
            )
        )
        if not checkpoint.full:
            after = finish_pass(after, now=now, manifest_hash=checkpoint.manifest_hash or "")
        return Page("mapping", after, read, pending, resolve=False)


def source_ids(rows: list[dict[str, object]]) -> tuple[list[str], int]:
    """Normalised, de-duplicated source keys of mapping rows, and how many were not GUIDs."""
    ids: dict[str, None] = {}
    invalid = 0
    for row in rows:
        value = odata.try_guid(row.get("msdynci_alternatevalue"))
        if value is None:
            invalid += 1
        else:
            ids[value] = None
    return list(ids), invalid
