"""Reading, diffing and writing links for one table: the work of a single step.

A step handles one set of source rows: a page of mapping rows in the pass's window, a chunk of the
retry list, or a page of already-linked source rows (the reconcile). For that set it reads, in one
``$batch`` of chunked ``Microsoft.Dynamics.CRM.In`` GETs, the rows' current links, every mapping row
that names them, and the profiles those name; decides each row's winner (the newest mapping row; a
conflict is counted); and writes only the rows whose link differs, in bulk.

Pages continue after the last key read (``$filter=... and <key> gt <last>``, ordered by key), not by
following the server's next link: a mapping row that changes during a pass leaves the window, and a
key-bounded page never skips a row whatever the server's paging does when its result set shrinks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from .checkpoints import Counters
from .concurrency import EXECUTION_LIMIT_SECONDS, WINDOW_SECONDS, ExecutionBudget
from .dataverse import odata
from .dataverse.batch import Part, PartResult
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, NotFoundError, RequestError, TransientError
from .dataverse.metadata import LookupInfo, TableInfo
from .writers import MAX_IN_FLIGHT, Submission, WritePool

MAPPING_SET = "msdynci_alternatekeys"
MAPPING_KEY = "msdynci_alternatekeyid"
MAPPING_VALUE = "msdynci_alternatevalue"
MAPPING_LOOKUP = "msdynci_lookupfield_customer"
MAPPING_PID = "msdynci_lookupfield_customerpid"
PROFILE_SET = "msdynci_customerprofiles"
PROFILE_KEY = "msdynci_customerprofileid"
_SAFE = "$,'()=/:@*"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkSettings:
    """Sizes and switches of the linking work."""

    page_size: int = 5000
    read_chunk: int = 1000
    write_batch: int = 500
    parallelism: int | None = None
    """Concurrent write requests; ``None`` follows the server's ``x-ms-dop-hint``."""
    plan: bool = False
    """Dry run: read and diff, write nothing."""
    clear_stale: bool = True
    """In the reconcile, clear links whose mapping is gone (``HYDRATION_STALE_LINKS=clear``), else report."""
    step_seconds: float = 120.0
    """A step (one queue message) starts no new page after this many seconds, well inside the Functions
    timeout; it always does at least one page. The checkpoint is saved after every page all the same."""
    step_pages: int | None = None
    """At most this many pages per step (``None``: only ``step_seconds`` bounds a step)."""
    read_ahead: int = 2
    """Pages read and decided while earlier pages' writes are in flight, one more per further application
    user (0: none)."""
    max_in_flight: int | None = MAX_IN_FLIGHT
    """Requests, reads included, one application user has in flight at most (``None``: follow the
    server's ``x-ms-dop-hint``); ``parallelism``, when set, replaces it."""
    execution_limit_seconds: float | None = EXECUTION_LIMIT_SECONDS
    """The service's execution-time limit per user and window, which each user's writes are paced to
    stay under (``concurrency.ExecutionBudget``); ``None`` turns pacing off (429s still slow writes)."""
    execution_window_seconds: float = WINDOW_SECONDS

    def write_pool(self, clients: Sequence[DataverseClient]) -> WritePool:
        """The write pool these settings describe, over one client per application user."""
        limit, window = self.execution_limit_seconds, self.execution_window_seconds
        return WritePool(
            clients,
            batch_size=self.write_batch,
            max_batch=max(self.write_batch, 1000),
            min_batch=min(self.write_batch, 50),
            parallelism=self.parallelism,
            max_in_flight=self.max_in_flight,
            budget=None
            if limit is None
            else lambda: ExecutionBudget(limit_seconds=limit, window_seconds=window),
        )


@dataclass(frozen=True)
class Target:
    """Everything a step needs to know about one source table."""

    table: TableInfo
    lookup: LookupInfo
    sources: tuple[tuple[str, str], ...]
    update_multiple: bool


@dataclass(frozen=True)
class Winner:
    """The mapping row that decides a source row's link."""

    profile: str | None
    modifiedon: str
    key: str


@dataclass
class StepResult:
    """What a step did, and which rows must be retried later."""

    counters: Counters = field(default_factory=Counters)
    retries: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """source id → (reason, profile)."""
    resolved: set[str] = field(default_factory=set)
    """source ids that no longer need a retry."""
    last_key: str | None = None
    exhausted: bool = False


@dataclass
class State:
    """What deciding a set of source rows needs, read in one go."""

    sources: dict[str, dict[str, Any]]
    """The source rows that exist, by id, with their current link."""
    deferred: set[str]
    """Ids that a later page of the same window names again (left to that page)."""
    profiles: dict[str, str | None]
    """Profiles that exist (id → partition id), at least every winner's."""
    winners: dict[str, tuple[Winner | None, bool]] = field(default_factory=dict)
    """Each named source row's winning mapping row, and whether its mapping rows disagree."""
    next_page: list[dict[str, Any]] | None = None
    """The next page's rows, when the batch carried its query (see ``Linker.mapping_page_part``)."""


@dataclass
class Decision:
    """What reading a set of source rows decided: the writes and clears to make, and what it counted."""

    result: StepResult
    writes: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(source id, profile, partition id) to bind."""
    clears: list[str] = field(default_factory=list)
    """Source ids whose stale link is cleared (the reconcile)."""
    retry_phase: bool = False
    reconcile: bool = False
    next_page: list[dict[str, Any]] | None = None
    """The next page of the same phase, read in the same ``$batch`` (``None``: not read)."""


class DeferredWrites:
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

    def result(self) -> StepResult:
        """Wait for the decision and its writes; the decision's error, if its reads failed."""
        return self._future.result().result()


class PendingWrites:
    """A decision's writes and clears, submitted to the write pool; ``result`` waits for them to land."""

    def __init__(
        self,
        decision: Decision,
        writes: Submission[tuple[str, str, str | None]] | None,
        clears: Submission[str] | None,
        *,
        clear_stale: bool,
    ) -> None:
        self.decision = decision
        self._writes = writes
        self._clears = clears
        self._clear_stale = clear_stale

    def cancel(self) -> None:
        """Send nothing more and wait for what is in flight (the step is being abandoned)."""
        for submission in (self._writes, self._clears):
            if submission is not None:
                submission.cancel()

    def result(self) -> StepResult:
        """Wait for the writes, then the decision's result with what was written, cleared and failed."""
        try:
            failed = self._writes.result() if self._writes is not None else set()
            cleared_failed = self._clears.result() if self._clears is not None else set()
        except BaseException:
            self.cancel()
            raise
        decision, result = self.decision, self.decision.result
        for source_id in failed | cleared_failed:
            result.resolved.discard(source_id)
            result.retries[source_id] = ("the write failed", None)
        written = len(decision.writes) - len(failed)
        extra = Counters(written=written, failed=len(failed) + len(cleared_failed))
        if decision.retry_phase:
            extra = extra + Counters(retried_ok=written)
        if decision.reconcile and self._clear_stale:
            extra = extra + Counters(cleared=len(decision.clears) - len(cleared_failed))
        result.counters = result.counters + extra
        return result


def _query(entity_set: str, options: dict[str, str]) -> str:
    """A relative URL with percent-encoded query options, safe inside a ``$batch`` request line."""
    return entity_set + "?" + "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in options.items())


def sources_filter(sources: Sequence[tuple[str, str]]) -> str:
    """The mapping rows of a table's CI-D data sources."""
    terms = [
        f"(msdynci_datasourcename eq {odata.string(ds)} and msdynci_entityname eq {odata.string(entity)})"
        for ds, entity in sources
    ]
    return "(" + " or ".join(terms) + ")"


class Linker:
    """Does the steps of one table's pass against one organization."""

    def __init__(
        self,
        client: DataverseClient,
        target: Target,
        settings: LinkSettings,
        *,
        now: Callable[[], datetime],
        pool: WritePool | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.settings = settings
        self.pool = pool or settings.write_pool([client])
        self._now = now
        self._lookup_value = odata.lookup_value(target.lookup.attribute)

    # -- reading ----------------------------------------------------------------------------

    def window_filter(self, start: datetime | None, end: datetime, after: str | None) -> str:
        """The table's mapping rows in the window ``[start, end)`` with keys after ``after``."""
        terms = [sources_filter(self.target.sources), f"modifiedon lt {odata.moment(end)}"]
        if start is not None:
            terms.append(f"modifiedon ge {odata.moment(start)}")
        if after is not None:
            terms.append(f"{MAPPING_KEY} gt {odata.normalize_guid(after)}")
        return " and ".join(terms)

    def _mapping_options(self, start: datetime | None, end: datetime, after: str | None) -> dict[str, str]:
        return {
            "$select": f"{MAPPING_KEY},{MAPPING_VALUE},_{MAPPING_LOOKUP}_value",
            "$filter": self.window_filter(start, end, after),
            "$orderby": f"{MAPPING_KEY} asc",
        }

    def mapping_page(
        self, *, start: datetime | None, end: datetime, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the window's mapping rows with keys after ``after``, and whether it was the last."""
        rows = self._first_page(MAPPING_SET, self._mapping_options(start, end, after), kind="read_mapping")
        return rows, self.is_last(rows)

    def is_last(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Whether a key-bounded page was the last one (it came back short)."""
        return len(rows) < self.settings.page_size

    def mapping_page_part(self, *, start: datetime | None, end: datetime, after: str) -> Part:
        """The query of ``mapping_page`` as a ``$batch`` part, to read with the current page's state."""
        return self._page_part(MAPPING_SET, self._mapping_options(start, end, after))

    def _page_part(self, entity_set: str, options: dict[str, str]) -> Part:
        prefer = {"Prefer": f"odata.maxpagesize={self.settings.page_size}"}
        return Part("GET", _query(entity_set, options), None, prefer)

    def linked_page(self, *, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """One page of source rows that have a link, with keys after ``after`` (the reconcile).

        The rows carry their current link (and its partition id), so the reconcile need not read them
        again: its ``$batch`` reads only the mapping and the profiles.
        """
        rows = self._first_page(self.target.table.entity_set, self._linked_options(after), kind="read_linked")
        return rows, self.is_last(rows)

    def _linked_options(self, after: str | None) -> dict[str, str]:
        key = self.target.table.primary_id
        terms = [f"{self._lookup_value} ne null"]
        if after is not None:
            terms.append(f"{key} gt {odata.normalize_guid(after)}")
        return {
            "$select": ",".join(self._source_columns()),
            "$filter": " and ".join(terms),
            "$orderby": f"{key} asc",
        }

    def _source_columns(self) -> list[str]:
        columns = [self.target.table.primary_id, self._lookup_value]
        if self.target.lookup.partition_column:
            columns.append(self.target.lookup.partition_column)
        return columns

    def _first_page(self, entity_set: str, options: dict[str, str], *, kind: str) -> list[dict[str, Any]]:
        with self.pool.reading():
            payload = self.client.get_json(
                _query(entity_set, options), kind=kind, Prefer=f"odata.maxpagesize={self.settings.page_size}"
            )
        rows = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(rows, list):
            raise TransientError(f"the answer to {kind} has no 'value' list")
        return rows

    def _batched_reads(self, parts: list[tuple[str, Part]]) -> dict[str, list[dict[str, Any]]]:
        """Run GETs in ``$batch`` requests (≤ 1000 parts each), following any next links; rows by label."""
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(parts), 1000):
            chunk = parts[start : start + 1000]
            with self.pool.reading():
                results = self.client.batch([p for _, p in chunk], kind="read_batch")
            for (label, _), result in zip(chunk, results, strict=True):
                found.setdefault(label, []).extend(self._rows_of(result, follow=label != "next"))
        return found

    def _rows_of(self, result: PartResult, *, follow: bool = True) -> list[dict[str, Any]]:
        """A part's rows, following its next links unless it is a key-bounded page (``follow``)."""
        if result.status >= 400:
            raise _part_error(result)
        payload = result.json()
        rows: list[dict[str, Any]] = list(payload.get("value", []))
        link = payload.get("@odata.nextLink")
        if link and follow:
            for page, _ in self.client.pages("", params={}, page_size=5000, kind="read_more", start=link):
                rows.extend(page)
        return rows

    def read_state(
        self,
        source_ids: Sequence[str],
        *,
        later: str | None = None,
        likely_profiles: Sequence[str] = (),
        known_sources: Sequence[dict[str, Any]] | None = None,
        next_page: Part | None = None,
    ) -> State:
        """Read, in one ``$batch``, what deciding these source rows needs (see ``State``).

        ``likely_profiles`` (the profiles the page's own mapping rows name) are read in the same batch;
        only winners naming other profiles (conflicts) cost a second one. ``known_sources`` are the
        source rows already read with their links (the reconcile's page): they are not read again.
        ``next_page`` (the query of the phase's next page) rides in the same batch, so a page costs one
        request instead of two.
        """
        key = self.target.table.primary_id
        select_source = self._source_columns()
        select_mapping = [MAPPING_KEY, MAPPING_VALUE, f"_{MAPPING_LOOKUP}_value", "modifiedon"]
        parts: list[tuple[str, Part]] = []
        for start in range(0, len(source_ids), self.settings.read_chunk):
            chunk = source_ids[start : start + self.settings.read_chunk]
            if known_sources is None:
                options = {"$select": ",".join(select_source), "$filter": odata.in_filter(key, chunk)}
                parts.append(("source", Part("GET", _query(self.target.table.entity_set, options))))
            values = ",".join(odata.string(v) for v in chunk)
            named = f"Microsoft.Dynamics.CRM.In(PropertyName='{MAPPING_VALUE}',PropertyValues=[{values}])"
            options = {
                "$select": ",".join(select_mapping),
                "$filter": f"{sources_filter(self.target.sources)} and {named}",
            }
            parts.append(("mapping", Part("GET", _query(MAPPING_SET, options))))
            if later is not None:
                options = {"$select": MAPPING_VALUE, "$filter": f"{later} and {named}"}
                parts.append(("later", Part("GET", _query(MAPPING_SET, options))))
        asked = sorted(set(likely_profiles))
        parts += self._profile_parts(asked)
        if next_page is not None:
            parts.append(("next", next_page))
        rows = self._batched_reads(parts)
        state = State(
            sources={
                odata.normalize_guid(r[key]): r
                for r in (rows.get("source", []) if known_sources is None else known_sources)
            },
            deferred={
                v for r in rows.get("later", []) if (v := odata.try_guid(r.get(MAPPING_VALUE))) is not None
            },
            profiles={
                odata.normalize_guid(r[PROFILE_KEY]): r.get("partitionid") for r in rows.get("profile", [])
            },
            next_page=rows.get("next", []) if next_page is not None else None,
        )
        by_source: dict[str, list[dict[str, Any]]] = {}
        for row in rows.get("mapping", []):
            value = odata.try_guid(row.get(MAPPING_VALUE))
            if value is not None:
                by_source.setdefault(value, []).append(row)
        for source_id, mapping_rows in by_source.items():
            state.winners[source_id] = self.winner(mapping_rows)
        needed = {w.profile for w, _ in state.winners.values() if w is not None and w.profile is not None}
        missing = sorted(needed - set(asked))
        if missing:
            extra = self._batched_reads(self._profile_parts(missing)).get("profile", [])
            state.profiles.update({odata.normalize_guid(r[PROFILE_KEY]): r.get("partitionid") for r in extra})
        return state

    def _profile_parts(self, profile_ids: Sequence[str]) -> list[tuple[str, Part]]:
        chunk = self.settings.read_chunk
        return [
            (
                "profile",
                Part(
                    "GET",
                    _query(
                        PROFILE_SET,
                        {
                            "$select": f"{PROFILE_KEY},partitionid",
                            "$filter": odata.in_filter(PROFILE_KEY, profile_ids[i : i + chunk]),
                        },
                    ),
                ),
            )
            for i in range(0, len(profile_ids), chunk)
        ]

    # -- deciding ---------------------------------------------------------------------------

    @staticmethod
    def winner(rows: Iterable[dict[str, Any]]) -> tuple[Winner | None, bool]:
        """The newest mapping row (ties: the greater key) and whether the rows disagree (a conflict)."""
        best: Winner | None = None
        profiles: set[str | None] = set()
        for row in rows:
            candidate = Winner(
                odata.try_guid(row.get(f"_{MAPPING_LOOKUP}_value")),
                str(row.get("modifiedon") or ""),
                odata.normalize_guid(row[MAPPING_KEY]),
            )
            profiles.add(candidate.profile)
            if best is None or (candidate.modifiedon, candidate.key) > (best.modifiedon, best.key):
                best = candidate
        return best, len(profiles) > 1

    def decide_rows(
        self,
        source_ids: Sequence[str],
        *,
        retry_phase: bool = False,
        later: str | None = None,
        likely_profiles: Sequence[str] = (),
        next_page: Part | None = None,
    ) -> Decision:
        """Read and decide the given source rows (the mapping and retry phases); write nothing yet.

        A source row named again by a later page of the same window is left to that page, so each row
        is decided once per pass: a dry run then counts exactly the writes the real pass makes, and
        two pages whose writes are in flight together never write the same row.
        """
        result = StepResult()
        state = self.read_state(source_ids, later=later, likely_profiles=likely_profiles, next_page=next_page)
        sources, profiles = state.sources, state.profiles
        writes: list[tuple[str, str, str | None]] = []
        counters: dict[str, int] = {}

        def count(name: str, n: int = 1) -> None:
            counters[name] = counters.get(name, 0) + n

        for source_id in source_ids:
            if source_id in state.deferred:
                continue
            best, conflict = state.winners.get(source_id, (None, False))
            count("conflicts", conflict)
            row = sources.get(source_id)
            if row is None:
                count("no_source")
                result.resolved.add(source_id)
                continue
            if best is None or best.profile is None:
                result.resolved.add(source_id)
                continue
            if best.profile not in profiles:
                count("no_profile")
                result.retries[source_id] = ("the profile does not exist yet", best.profile)
                continue
            result.resolved.add(source_id)
            if self._is_current(row, best.profile, profiles[best.profile]):
                count("already_correct")
                if retry_phase:
                    count("retried_ok")
                continue
            writes.append((source_id, best.profile, profiles[best.profile]))
        result.counters = Counters(**counters)
        return Decision(result, writes=writes, retry_phase=retry_phase, next_page=state.next_page)

    def submit(self, decision: Decision, *, stop: threading.Event | None = None) -> PendingWrites:
        """Submit a decision's writes and clears to the write pool (nothing in plan mode); do not wait.

        ``stop`` is shared by a step's pages: the first failed write stops the step's unsent ones.
        """
        writes = clears = None
        if not self.settings.plan:
            if decision.writes:
                writes = self.pool.submit(decision.writes, self._write_chunk, stop=stop)
            if decision.clears and self.settings.clear_stale:
                clears = self.pool.submit(decision.clears, self._clear_chunk, stop=stop)
        return PendingWrites(decision, writes, clears, clear_stale=self.settings.clear_stale)

    def _is_current(self, row: dict[str, Any], profile: str, partition: str | None) -> bool:
        current = odata.try_guid(row.get(self._lookup_value))
        if current != profile:
            return False
        column = self.target.lookup.partition_column
        return column is None or row.get(column) == partition

    # -- writing ----------------------------------------------------------------------------

    def bind(self, profile: str, partition: str | None) -> str:
        """The ``@odata.bind`` value naming a profile, with its partition id when it has one."""
        if partition:
            return f"{PROFILE_SET}({PROFILE_KEY}={profile},partitionid={odata.string(partition)})"
        return f"{PROFILE_SET}({profile})"

    def write(self, writes: Sequence[tuple[str, str, str | None]]) -> set[str]:
        """Write links in bulk over the write pool (nothing in plan mode); return the ids that failed."""
        if self.settings.plan or not writes:
            return set()
        return self.pool.run(writes, self._write_chunk)

    def _write_chunk(self, client: DataverseClient, chunk: Sequence[tuple[str, str, str | None]]) -> set[str]:
        table = self.target.table
        nav = self.target.lookup.navigation_property
        if self.target.update_multiple:
            targets = [
                {
                    "@odata.type": f"Microsoft.Dynamics.CRM.{table.logical_name}",
                    table.primary_id: source_id,
                    f"{nav}@odata.bind": self.bind(profile, partition),
                }
                for source_id, profile, partition in chunk
            ]
            try:
                client.request(
                    "POST",
                    f"{table.entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple",
                    kind="update_multiple",
                    json_body={"Targets": targets},
                    headers=client.write_headers(),
                )
                return set()
            except (RequestError, NotFoundError) as exc:
                log.info(
                    "UpdateMultiple on %s failed (%s); resending as single updates",
                    table.logical_name,
                    exc.status,
                )
        parts = [
            Part(
                "PATCH",
                f"{table.entity_set}({source_id})",
                {f"{nav}@odata.bind": self.bind(profile, partition)},
                {"If-Match": "*", **client.write_headers()},
            )
            for source_id, profile, partition in chunk
        ]
        results = client.batch(parts, kind="write_batch")
        return {source_id for (source_id, _, _), r in zip(chunk, results, strict=True) if r.status >= 300}

    def clear(self, source_ids: Sequence[str]) -> set[str]:
        """Clear links (``DELETE .../<nav>/$ref`` in ``$batch``); return the ids that failed."""
        if self.settings.plan or not source_ids:
            return set()
        return self.pool.run(source_ids, self._clear_chunk)

    def _clear_chunk(self, client: DataverseClient, chunk: Sequence[str]) -> set[str]:
        nav = self.target.lookup.navigation_property
        parts = [
            Part("DELETE", f"{self.target.table.entity_set}({s})/{nav}/$ref", None, client.write_headers())
            for s in chunk
        ]
        results = client.batch(parts, kind="clear_batch")
        return {s for s, r in zip(chunk, results, strict=True) if r.status >= 300 and r.status != 404}

    # -- reconcile ----------------------------------------------------------------------------

    def reconcile(self, rows: Sequence[dict[str, Any]]) -> StepResult:
        """Check linked rows against the mapping, fix wrong links and clear stale ones, and wait."""
        return self.submit(self.decide_reconcile(rows)).result()

    def decide_reconcile(self, rows: Sequence[dict[str, Any]]) -> Decision:
        """Decide a page of linked source rows (as ``linked_page`` returns them); write nothing yet.

        Wrong links are to be fixed, stale ones (mapping row or profile gone) cleared or counted.
        """
        key = self.target.table.primary_id
        source_ids = [odata.normalize_guid(r[key]) for r in rows]
        current = [p for r in rows if (p := odata.try_guid(r.get(self._lookup_value)))]
        result = StepResult()
        state = self.read_state(source_ids, likely_profiles=current, known_sources=rows)
        sources, profiles = state.sources, state.profiles
        writes: list[tuple[str, str, str | None]] = []
        stale: list[str] = []
        for source_id in source_ids:
            row = sources.get(source_id)
            if row is None:
                continue
            best, _ = state.winners.get(source_id, (None, False))
            if best is None or best.profile is None:
                stale.append(source_id)
            elif best.profile not in profiles:
                result.retries[source_id] = ("the profile does not exist yet", best.profile)
            elif not self._is_current(row, best.profile, profiles[best.profile]):
                writes.append((source_id, best.profile, profiles[best.profile]))
        result.counters = Counters(stale=len(stale))
        return Decision(result, writes=writes, clears=stale, reconcile=True)


def _part_error(result: PartResult) -> Exception:
    """A failed GET inside a batch, as the client's error types."""
    text = f"a read in a $batch failed with {result.status}"
    if result.status >= 500 or result.status in (408, 429):
        return TransientError(text, status=result.status)
    return FatalError(text, status=result.status)
