"""One small reader per phase: each returns a page and what deciding it needs.

- ``RetryReader`` takes the next entries of the table's retry list (a bounded, key-ranged read);
- ``MappingReader`` takes the next page of the window's mapping rows, key after key;
- ``ReconcileReader`` takes the next page of source rows that have a link.

Whether more follows is the server's word (``KeysetPaginator``), or for the retry list whether the store
has further entries, never a page's size. For the page's source rows, one ``$batch`` of chunked
``Microsoft.Dynamics.CRM.In`` GETs reads their links, every mapping row naming them and the profiles
those name (``PageReads.snapshot``); the mapping page's batch also carries the query of the next page,
so a mapping page costs one request. The reconcile's rows already carry their links, and their batch is
read in the background while the next page is queried (``Page.check``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .checkpoints import Checkpoint, Counters, PageOutcome, Phase
from .dataverse import odata
from .dataverse.batch import Part, PartResult
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, TransientError
from .dataverse.keyset import KeysetPaginator
from .dataverse.paging import Paginator, PagingLoopError
from .decision import (
    PageKind,
    Snapshot,
    profiles_of,
    profiles_to_check,
    snapshot_of,
    stale_candidates,
    with_other_forms,
)
from .mapping import MAPPING_KEY, MAPPING_PROFILE, MAPPING_VALUE, Queries
from .state import StateStore
from .writers import WritePool

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Prefetched:
    """A phase's next page, read already: its rows and the server's next link."""

    phase: Phase
    cursor: str | None
    rows: Rows
    next_link: str | None

    def matches(self, checkpoint: Checkpoint) -> bool:
        """Whether these are the rows of the page ``checkpoint`` is at."""
        return self.phase is checkpoint.phase and self.cursor == checkpoint.cursor


@dataclass
class Page:
    """One page read: its rows to decide, where it leaves the phase, and what deciding it needs."""

    kind: PageKind
    source_ids: list[str]
    outcome: PageOutcome
    read: Counters
    snapshot: Snapshot | None = None
    """What the server holds for the rows, read with the page."""
    check: Callable[[], Snapshot] | None = None
    """Reads the snapshot later, in the background (the reconcile)."""
    following: Prefetched | None = None
    """The next page of the phase, read already; the sequencer takes it (``take_following``)."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Passes each row has been on the retry list (a retry page)."""

    def take_following(self) -> Prefetched | None:
        """The next page, let go of: this page may wait for its writes while later pages are read."""
        following, self.following = self.following, None
        return following


def source_ids(rows: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
    """Normalised, de-duplicated source keys of mapping rows, and how many were not GUIDs."""
    ids: dict[str, None] = {}
    invalid = 0
    for row in rows:
        value = odata.try_guid(row.get(MAPPING_VALUE))
        if value is None:
            invalid += 1
        else:
            ids[value] = None
    return list(ids), invalid


class PageReads:
    """The reads every phase makes, through the write pool's read slots."""

    def __init__(self, client: DataverseClient, pool: WritePool, queries: Queries) -> None:
        self.client = client
        self.pool = pool
        self.queries = queries

    def page(self, url: str, *, kind: str) -> tuple[Rows, str | None]:
        """One page of a query and the server's next link."""
        with self.pool.reading():
            payload = self.client.get_json(url, kind=kind, Prefer=self.queries.prefer["Prefer"])
        return _page_of(payload, kind)

    def keyset_page(
        self, pager: KeysetPaginator, url: str, first: Prefetched | None, *, key: str, kind: str
    ) -> Rows:
        """The next key-set page (``first`` when it was read already), past any empty pages."""
        rows, link = (first.rows, first.next_link) if first is not None else self.page(url, kind=kind)
        while True:
            pager.advance(str(rows[-1][key]) if rows else None, link)
            if pager.follow is None:
                return rows
            rows, link = self.page(self.client_link(pager.follow), kind=kind)

    def client_link(self, link: str) -> str:
        """A next link to follow as given, once checked to point into the organization."""
        return Paginator(self.client.organization_url).check(link)

    def snapshot(
        self,
        ids: Sequence[str],
        *,
        later: str | None = None,
        likely_profiles: Sequence[str] = (),
        known_sources: Sequence[dict[str, Any]] | None = None,
        next_page: Part | None = None,
    ) -> tuple[Snapshot, tuple[Rows, str | None] | None]:
        """What deciding these rows needs, in one ``$batch``, and the next page when it rode along.

        ``likely_profiles`` (the profiles the page's own rows name) are read in the same batch; only
        winners naming others (conflicts) cost a second one. For the reconcile (``known_sources``), rows
        it would clear are looked up once more by their keys' other forms (``_other_forms``).
        """
        queries = self.queries
        parts = queries.snapshot_parts(ids, later=later, read_sources=known_sources is None)
        parts += queries.profile_parts(sorted(set(likely_profiles)))
        if next_page is not None:
            parts.append(("next", next_page))
        rows, following = self._batched(parts)
        snapshot = snapshot_of(rows, key=queries.target.table.primary_id, known_sources=known_sources)
        if known_sources is not None:
            snapshot = self._other_forms(snapshot, ids)
        missing = sorted(profiles_to_check(snapshot))
        if missing:
            extra = profiles_of(self._batched(queries.profile_parts(missing))[0].get("profile", []))
            snapshot = replace(snapshot, profiles={**snapshot.profiles, **extra})
        return snapshot, following

    def _other_forms(self, snapshot: Snapshot, ids: Sequence[str]) -> Snapshot:
        """The reconcile's snapshot, with the mapping rows naming its stale candidates in other forms.

        The bare-GUID lookup cannot find a mapping row written ``{guid}``; without this read its row's
        link would look stale and be cleared. Only rows about to be cleared are asked about, so a page
        with none (the usual case) costs no request.
        """
        candidates = stale_candidates(snapshot, ids)
        if not candidates:
            return snapshot
        found = self._batched(self.queries.unparsed_parts(candidates))[0]
        return with_other_forms(snapshot, found.get("unparsed", []))

    def _batched(
        self, parts: list[tuple[str, Part]]
    ) -> tuple[dict[str, Rows], tuple[Rows, str | None] | None]:
        """GETs in ``$batch`` requests of at most 1,000 parts, every next link followed but the page's.

        A part's next link is followed inside the next ``$batch`` too, never as a GET of its own: its
        URL repeats the part's ``In`` filter, which can be far longer than the 32 KB a URL may have.
        """
        found: dict[str, Rows] = {}
        following = None
        seen: set[str] = set()
        while parts:
            further: list[tuple[str, Part]] = []
            for start in range(0, len(parts), 1000):
                chunk = parts[start : start + 1000]
                with self.pool.reading():
                    results = self.client.batch([p for _, p in chunk], kind="read_batch")
                for (label, part), result in zip(chunk, results, strict=True):
                    rows, link = _page_of(_part_json(result), "read_batch")
                    if label == "next":
                        following = (rows, link)
                        continue
                    found.setdefault(label, []).extend(rows)
                    if link is not None:
                        further.append((label, Part("GET", self._relative(link, seen), None, part.headers)))
            parts = further
        return found, following

    def _relative(self, link: str, seen: set[str]) -> str:
        """A part's next link, checked, as a path under the Web API root for the next ``$batch``."""
        checked = self.client_link(link)
        if checked in seen:
            raise PagingLoopError("the server returned the same next link twice; stopping to avoid a loop")
        seen.add(checked)
        if not checked.startswith(self.client.api_url):
            raise FatalError("a next link in a $batch answer points outside the Web API; not following it")
        return checked[len(self.client.api_url) :]


class RetryReader:
    """The next entries of the table's retry list."""

    def __init__(self, reads: PageReads, state: StateStore, page_size: int) -> None:
        self.reads, self.state, self.page_size = reads, state, page_size

    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        """A page of retry-list entries after the last one handled; more follow if the store has them."""
        entries = self.state.retry_entries(
            checkpoint.table, after=checkpoint.retry_cursor, limit=self.page_size + 1
        )
        more = len(entries) > self.page_size
        ids = [key for key, _ in entries[: self.page_size]]
        attempts = {key: _attempts(entity) for key, entity in entries[: self.page_size]}
        outcome = PageOutcome(Phase.RETRY, ids[-1] if ids else checkpoint.retry_cursor, more)
        if not ids:
            return Page(PageKind.RETRY, [], outcome, Counters())
        snapshot, _ = self.reads.snapshot(ids)
        read = Counters(pages=1, rows_read=len(ids))
        return Page(PageKind.RETRY, ids, outcome, read, snapshot=snapshot, attempts=attempts)


class MappingReader:
    """The next page of the window's mapping rows, with what deciding it needs and the page after."""

    def __init__(self, reads: PageReads) -> None:
        self.reads = reads
        self.pager: KeysetPaginator | None = None

    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        """Read on after the checkpoint's cursor, until the server says nothing follows."""
        queries, start, end = self.reads.queries, checkpoint.window_start, checkpoint.window_end
        if end is None:
            raise FatalError(f"the checkpoint of {checkpoint.table} has a mapping phase but no window")
        pager = self._pager(checkpoint)
        url = queries.mapping_page(start, end, checkpoint.cursor)
        rows = self.reads.keyset_page(pager, url, first, key=MAPPING_KEY, kind="read_mapping")
        ids, invalid = source_ids(rows)
        later = next_page = None
        if pager.has_more and pager.cursor is not None:
            later = queries.window_filter(start, end, pager.cursor)
            next_page = queries.page_part(queries.mapping_page(start, end, pager.cursor))
        likely = [p for r in rows if (p := odata.try_guid(r.get(MAPPING_PROFILE)))]
        snapshot, following = None, None
        if ids:
            snapshot, following = self.reads.snapshot(
                ids, later=later, likely_profiles=likely, next_page=next_page
            )
        outcome = PageOutcome(Phase.MAPPING, pager.cursor, pager.has_more)
        read = Counters(pages=1, rows_read=len(rows), invalid_keys=invalid)
        page = Page(PageKind.MAPPING, ids, outcome, read, snapshot=snapshot)
        if following is not None:
            page.following = Prefetched(Phase.MAPPING, pager.cursor, *following)
        return page

    def _pager(self, checkpoint: Checkpoint) -> KeysetPaginator:
        """One paginator for the step's mapping pages, so a server going round in circles is caught."""
        if self.pager is None or self.pager.cursor != checkpoint.cursor:
            self.pager = KeysetPaginator(checkpoint.cursor)
        return self.pager


class ReconcileReader:
    """The next page of linked source rows; its check is read in the background."""

    def __init__(self, reads: PageReads, *, read_ahead: bool) -> None:
        self.reads = reads
        self.read_ahead = read_ahead
        self.pager: KeysetPaginator | None = None

    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        """Read on after the checkpoint's cursor; read the next page now while this one is checked."""
        reads, target = self.reads, self.reads.queries.target
        if self.pager is None or self.pager.cursor != checkpoint.cursor:
            self.pager = KeysetPaginator(checkpoint.cursor)
        pager, key = self.pager, target.table.primary_id
        rows = reads.keyset_page(
            pager, reads.queries.linked_page(checkpoint.cursor), first, key=key, kind="read_linked"
        )
        ids = [odata.normalize_guid(str(r[key])) for r in rows]
        current = [p for r in rows if (p := odata.try_guid(r.get(target.link_column)))]
        outcome = PageOutcome(Phase.RECONCILE, pager.cursor, pager.has_more)
        page = Page(PageKind.RECONCILE, ids, outcome, Counters(pages=1, rows_read=len(rows)))
        if rows:
            page.check = lambda: reads.snapshot(ids, likely_profiles=current, known_sources=rows)[0]
        if pager.has_more and self.read_ahead and pager.cursor is not None:
            following = reads.page(reads.queries.linked_page(pager.cursor), kind="read_linked")
            page.following = Prefetched(Phase.RECONCILE, pager.cursor, *following)
        return page


def _attempts(entity: dict[str, Any]) -> int:
    """The passes a retry-list entry has been retried in (entries written before counting: one)."""
    value = entity.get("attempts")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _part_json(result: PartResult) -> Any:
    """A GET's answer inside a batch, or the client's error types for a failed one."""
    if result.status >= 400:
        text = f"a read in a $batch failed with {result.status}"
        if result.status >= 500 or result.status in (408, 429):
            raise TransientError(text, status=result.status)
        raise FatalError(text, status=result.status)
    return result.json()


def _page_of(payload: Any, kind: str) -> tuple[Rows, str | None]:
    """A page's rows and its next link, from an answer that must carry a ``value`` list."""
    rows = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise TransientError(f"the answer to {kind} has no 'value' list")
    link = payload.get("@odata.nextLink")
    if link is not None and not isinstance(link, str):
        raise TransientError(f"the answer to {kind} has a next link that is not a string")
    return rows, link
