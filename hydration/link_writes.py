"""Writing and clearing links, in bulk over the write pool, with a ``$batch`` fallback; or not at all.

A dry run and a live pass differ in one object only: the writer. ``LiveWriter`` sends a decision's
writes (``UpdateMultiple`` where the table supports it, else a ``$batch`` of ``PATCH`` with
``If-Match: *``) and clears (``DELETE …/<nav>/$ref``); ``DryRunWriter`` sends nothing and reports what
would land; ``SurveyWriter`` (a live pass's survey, for the relink guard) sends nothing and counts each
changed link once. Both return ``PendingWrites``, which the sequencer waits on before the page's checkpoint.

A failed bulk request is resent as single ``PATCH`` parts in one ``$batch`` with
``Prefer: odata.continue-on-error`` (standard tables' ``UpdateMultiple`` is all-or-nothing), so good rows
land and the bad ones go to the retry list.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol

from .checkpoints import Change, Counters
from .dataverse import odata
from .dataverse.batch import Part
from .dataverse.client import DataverseClient
from .dataverse.errors import NotFoundError, RequestError
from .decision import WRITE_FAILED, Decision, PageKind
from .log_context import context_logger
from .mapping import PROFILE_KEY, PROFILE_SET, Target
from .writers import Submission, WritePool

log = context_logger(__name__)
Link = tuple[str, str, str | None]
"""(source id, profile, partition id)."""


@dataclass(frozen=True)
class Landed:
    """What a page's writes did: the decision's counts with what was written, cleared and failed."""

    counters: Counters
    retries: dict[str, tuple[str, str | None]]
    resolved: frozenset[str]
    attempts: dict[str, int]
    """The attempt each retried row is on (absent: its first)."""
    changes: tuple[Change, ...] = ()
    """A sample of the page's changes to existing links (clears only where stale links are cleared)."""


class PendingWrites:
    """A decision's writes and clears, submitted to the write pool; ``result`` waits for them to land."""

    def __init__(
        self,
        kind: PageKind,
        decision: Decision,
        writes: Submission[Link] | None,
        clears: Submission[str] | None,
        *,
        clear_stale: bool,
    ) -> None:
        self.kind = kind
        self.decision = decision
        self._writes = writes
        self._clears = clears
        self._clear_stale = clear_stale

    def cancel(self) -> None:
        """Send nothing more and wait for what is in flight (the step is being abandoned)."""
        for submission in (self._writes, self._clears):
            if submission is not None:
                submission.cancel()

    def result(self) -> Landed:
        """Wait for the writes, then the decision's counts with what was written, cleared and failed."""
        try:
            failed = self._writes.result() if self._writes is not None else set()
            clear_failed = self._clears.result() if self._clears is not None else set()
        except BaseException:
            self.cancel()
            raise
        decision = self.decision
        retries = dict(decision.retries)
        for source_id in failed | clear_failed:
            retries[source_id] = (WRITE_FAILED, None)
        written = len(decision.writes) - len(failed)
        extra = Counters(written=written, failed=len(failed) + len(clear_failed))
        if self.kind is PageKind.RETRY:
            extra = extra + Counters(retried_ok=written)
        if self.kind is PageKind.RECONCILE and self._clear_stale:
            extra = extra + Counters(cleared=len(decision.clears) - len(clear_failed))
        resolved = decision.resolved - failed - clear_failed
        changes = tuple(c for c in decision.changes if c[2] is not None or self._clear_stale)
        return Landed(decision.counters + extra, retries, resolved, dict(decision.attempts), changes)


class DecidedLater:
    """A page decided in the background, then its writes (the reconcile's pages).

    The reads that decide a reconcile page need not hold up the next page's query. Waits and cancels as
    ``PendingWrites`` does.
    """

    def __init__(self, future: Future[PendingWrites]) -> None:
        self._future = future

    def cancel(self) -> None:
        """Decide nothing more, send nothing more, and wait for what is in flight."""
        if self._future.cancel():
            return
        try:
            pending = self._future.result()
        except BaseException:  # the decision failed: nothing was submitted
            return
        pending.cancel()

    def result(self) -> Landed:
        """Wait for the decision and its writes; the decision's error, if its reads failed."""
        return self._future.result().result()


class LinkWriter(Protocol):
    """Where a decision's writes go: to the server (a live pass) or nowhere (a dry run)."""

    def submit(self, kind: PageKind, decision: Decision, *, stop: threading.Event) -> PendingWrites:
        """Submit the writes and clears; do not wait. ``stop`` is shared by a step's pages."""
        ...


@dataclass(frozen=True)
class DryRunWriter:
    """Writes nothing, and reports what a live pass would write and clear."""

    clear_stale: bool

    def submit(self, kind: PageKind, decision: Decision, *, stop: threading.Event) -> PendingWrites:
        """Nothing is sent: the result counts the decision's writes as if they had landed."""
        return PendingWrites(kind, decision, None, None, clear_stale=self.clear_stale)


@dataclass(frozen=True)
class SurveyWriter:
    """Writes nothing, and counts what a live pass will change to existing links, each row once.

    A live full pass's reconcile finds the rows its mapping phase rewrote already correct; a survey's
    finds them as they were, and would count their relinks twice. So a survey's reconcile pages count
    only their clears: a full pass over a table whose every link moves changes each link once, not twice.
    """

    clear_stale: bool

    def submit(self, kind: PageKind, decision: Decision, *, stop: threading.Event) -> PendingWrites:
        """Nothing is sent: the result counts the decision (a reconcile page's clears only)."""
        if kind is PageKind.RECONCILE:
            decision = replace(
                decision,
                writes=(),
                counters=replace(decision.counters, relinked=0),
                changes=tuple(change for change in decision.changes if change[2] is None),
            )
        return PendingWrites(kind, decision, None, None, clear_stale=self.clear_stale)


class LiveWriter:
    """Writes and clears one table's links over the write pool."""

    def __init__(self, target: Target, pool: WritePool, *, clear_stale: bool) -> None:
        self.target = target
        self.pool = pool
        self.clear_stale = clear_stale

    def submit(self, kind: PageKind, decision: Decision, *, stop: threading.Event) -> PendingWrites:
        """Submit the decision's writes and its clears (when stale links are cleared); do not wait.

        The first failed chunk sets ``stop``: no chunk of the step is sent after it.
        """
        writes = clears = None
        if decision.writes:
            writes = self.pool.submit(decision.writes, self._write_chunk, stop=stop)
        if decision.clears and self.clear_stale:
            clears = self.pool.submit(decision.clears, self._clear_chunk, stop=stop)
        return PendingWrites(kind, decision, writes, clears, clear_stale=self.clear_stale)

    def _write_chunk(self, client: DataverseClient, chunk: Sequence[Link]) -> set[str]:
        table = self.target.table
        if self.target.update_multiple:
            try:
                client.request(
                    "POST",
                    f"{table.entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple",
                    kind="update_multiple",
                    json_body={"Targets": [self._target_of(link) for link in chunk]},
                    headers=client.write_headers(),
                )
                return set()
            except (RequestError, NotFoundError) as exc:
                log.info(
                    "UpdateMultiple on %s failed (%s); resending as single updates",
                    table.logical_name,
                    exc.status,
                )
        nav = self.target.lookup.navigation_property
        parts = [
            Part(
                "PATCH",
                f"{table.entity_set}({source_id})",
                {f"{nav}@odata.bind": bind(profile, partition)},
                {"If-Match": "*", **client.write_headers()},
            )
            for source_id, profile, partition in chunk
        ]
        results = client.batch(parts, kind="write_batch")
        return {source_id for (source_id, _, _), r in zip(chunk, results, strict=True) if r.status >= 300}

    def _target_of(self, link: Link) -> dict[str, str]:
        source_id, profile, partition = link
        table = self.target.table
        return {
            "@odata.type": f"Microsoft.Dynamics.CRM.{table.logical_name}",
            table.primary_id: source_id,
            f"{self.target.lookup.navigation_property}@odata.bind": bind(profile, partition),
        }

    def _clear_chunk(self, client: DataverseClient, chunk: Sequence[str]) -> set[str]:
        nav = self.target.lookup.navigation_property
        parts = [
            Part("DELETE", f"{self.target.table.entity_set}({s})/{nav}/$ref", None, client.write_headers())
            for s in chunk
        ]
        results = client.batch(parts, kind="clear_batch")
        return {s for s, r in zip(chunk, results, strict=True) if r.status >= 300 and r.status != 404}


def bind(profile: str, partition: str | None) -> str:
    """The ``@odata.bind`` value naming a profile, with its partition id when it has one."""
    if partition:
        return f"{PROFILE_SET}({PROFILE_KEY}={profile},partitionid={odata.string(partition)})"
    return f"{PROFILE_SET}({profile})"
