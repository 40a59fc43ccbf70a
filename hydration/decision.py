"""The product's core rule, as pure functions: which rows of a page to write, to clear and to retry.

Given a page of source rows and a ``Snapshot`` of what the server holds for them (their current links,
every mapping row naming them, the profiles those name), ``decide`` says what a correct hydration
writes. It does no I/O, so every case (conflicting sources, merged and missing profiles, invalid and
upper-case keys, partition ids, stale links) is a row of a table-driven test.

The rules, once for the whole product:

- a source row's **winner** is its newest mapping row (ties: the greater mapping key); mapping rows
  that disagree are a conflict, counted;
- a row whose link already equals the winner's profile (and partition id) is not written;
- a row whose link names another profile is a **relink**, counted with a sample of (row, old, new):
  what the relink guard weighs before a pass writes; a first link (no link yet) is not one;
- a winner whose profile does not exist yet goes to the retry list;
- a winner whose profile id does not parse is an invalid key: the row's link is left alone, whatever
  it is — nothing is ever cleared or overwritten because of data that could not be parsed;
- in the reconcile, a linked row that no mapping row names (or whose winner names no profile) is stale,
  unless a mapping row names it in a form that does not parse (``{guid}``, hyphen-less): then it is an
  invalid key and its link stays;
- a row of the retry list that still cannot be linked after ``retry_limit`` passes leaves the list and
  is counted as given up: the list stays bounded, and the next full pass decides the row anew.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .checkpoints import SAMPLE_SIZE, Change, Counters
from .dataverse import odata
from .mapping import MAPPING_KEY, MAPPING_PROFILE, MAPPING_VALUE, PROFILE_KEY, named_in_unparsed_form

PROFILE_MISSING = "the profile does not exist yet"
WRITE_FAILED = "the write failed"


class PageKind(StrEnum):
    """What a page's rows are, which decides the rules that apply to them."""

    MAPPING = "mapping"
    """Source rows named by mapping rows of the window: written when their link differs."""
    RETRY = "retry"
    """Rows of the retry list: as the mapping, and a row that no longer needs a retry leaves the list."""
    RECONCILE = "reconcile"
    """Rows that have a link: as the mapping, and a link no mapping row supports is stale."""


@dataclass(frozen=True)
class Winner:
    """The mapping row that decides a source row's link."""

    profile: str | None
    """The profile's GUID, normalised; ``None`` when the row names none or names one that does not parse."""
    modifiedon: str
    key: str
    unparsable: bool = False
    """The row names a profile whose id is not a GUID (an invalid key)."""


def winner(rows: Iterable[Mapping[str, Any]]) -> tuple[Winner | None, bool]:
    """The newest mapping row (ties: the greater key) and whether the rows disagree (a conflict)."""
    best: Winner | None = None
    profiles: set[str | None] = set()
    for row in rows:
        named = row.get(MAPPING_PROFILE)
        profile = odata.try_guid(named)
        candidate = Winner(
            profile,
            str(row.get("modifiedon") or ""),
            odata.normalize_guid(str(row[MAPPING_KEY])),
            unparsable=named is not None and profile is None,
        )
        profiles.add(profile if not candidate.unparsable else f"invalid:{named!r}")
        if best is None or (candidate.modifiedon, candidate.key) > (best.modifiedon, best.key):
            best = candidate
    return best, len(profiles) > 1


@dataclass(frozen=True)
class LinkColumns:
    """Where a source row holds its link: the lookup's value column and its partition id column."""

    value: str
    partition: str | None = None

    def is_current(self, row: Mapping[str, Any], profile: str, partition: str | None) -> bool:
        """Whether the row already links this profile (and, where links carry one, its partition id)."""
        if odata.try_guid(row.get(self.value)) != profile:
            return False
        return self.partition is None or row.get(self.partition) == partition


@dataclass(frozen=True)
class Snapshot:
    """What the server holds for a page's source rows, read in one go."""

    sources: Mapping[str, Mapping[str, Any]]
    """The source rows that exist, by normalised id, with their current link."""
    mapping: Mapping[str, Sequence[Mapping[str, Any]]]
    """Every mapping row (of the table's data sources) naming each source row, by normalised id."""
    profiles: Mapping[str, str | None]
    """Profiles that exist (normalised id → partition id), at least every winner's."""
    deferred: frozenset[str] = frozenset()
    """Ids that a later page of the same window names again: left to that page."""
    unparsed: frozenset[str] = frozenset()
    """Ids a mapping row names in a form that does not parse (``{guid}``): the reconcile keeps their links."""


def snapshot_of(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    key: str,
    known_sources: Sequence[Mapping[str, Any]] | None,
) -> Snapshot:
    """A ``Snapshot`` from the labelled rows of a page's reads (source, mapping, later, profile).

    Keys are normalised here, once: upper-case GUIDs meet their lowercase twins.
    Mapping rows whose alternate value is not a GUID name no source row and are dropped.
    """
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows.get("mapping", []):
        value = odata.try_guid(row.get(MAPPING_VALUE))
        if value is not None:
            by_source.setdefault(value, []).append(row)
    sources = rows.get("source", []) if known_sources is None else known_sources
    return Snapshot(
        sources={odata.normalize_guid(str(r[key])): r for r in sources},
        mapping=by_source,
        profiles={
            odata.normalize_guid(str(r[PROFILE_KEY])): r.get("partitionid") for r in rows.get("profile", [])
        },
        deferred=frozenset(
            v for r in rows.get("later", []) if (v := odata.try_guid(r.get(MAPPING_VALUE))) is not None
        ),
    )


def stale_candidates(snapshot: Snapshot, source_ids: Sequence[str]) -> list[str]:
    """The rows the reconcile would clear on this snapshot: no mapping row found, or no profile named."""
    found = []
    for source_id in source_ids:
        best, _ = winner(snapshot.mapping.get(source_id, ()))
        if best is None or (best.profile is None and not best.unparsable):
            found.append(source_id)
    return found


def with_other_forms(snapshot: Snapshot, rows: Iterable[Mapping[str, Any]]) -> Snapshot:
    """The snapshot with the mapping rows that name its rows in other forms (``Queries.unparsed_parts``).

    A row whose value parses is a mapping row like any other; one whose value does not parse marks the
    row it names as named by unparsable data, whose link the reconcile leaves alone.
    """
    mapping = {key: list(named) for key, named in snapshot.mapping.items()}
    known = {str(r[MAPPING_KEY]).lower() for named in mapping.values() for r in named}
    unparsed = set(snapshot.unparsed)
    for row in rows:
        value = row.get(MAPPING_VALUE)
        parsed = odata.try_guid(value)
        if parsed is not None and str(row[MAPPING_KEY]).lower() not in known:
            mapping.setdefault(parsed, []).append(row)
        elif parsed is None and (named := named_in_unparsed_form(value)) is not None:
            unparsed.add(named)
    return replace(snapshot, mapping=mapping, unparsed=frozenset(unparsed))


def profiles_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """Profile rows as normalised id → partition id."""
    return {odata.normalize_guid(str(r[PROFILE_KEY])): r.get("partitionid") for r in rows}


def profiles_to_check(snapshot: Snapshot) -> set[str]:
    """The winners' profiles that the snapshot does not say exist or not (a conflict named another)."""
    named = {w.profile for rows in snapshot.mapping.values() if (w := winner(rows)[0]) and w.profile}
    return named - set(snapshot.profiles)


@dataclass(frozen=True)
class Decision:
    """What a page needs: the links to write and to clear, the rows to retry, and what was counted."""

    writes: tuple[tuple[str, str, str | None], ...] = ()
    """(source id, profile, partition id) to bind."""
    clears: tuple[str, ...] = ()
    """Source ids whose stale link is cleared (the reconcile)."""
    retries: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    """Source id → (reason, profile): rows the next pass re-reads first."""
    resolved: frozenset[str] = frozenset()
    """Source ids that no longer need a retry."""
    counters: Counters = field(default_factory=Counters)
    attempts: Mapping[str, int] = field(default_factory=dict)
    """The attempt each retried row is on (absent: its first)."""
    changes: tuple[Change, ...] = ()
    """A sample (at most ``SAMPLE_SIZE``) of the page's changes to existing links: relinks and clears."""


@dataclass
class _Tally:
    writes: list[tuple[str, str, str | None]] = field(default_factory=list)
    clears: list[str] = field(default_factory=list)
    retries: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def change(self, source_id: str, old: str, new: str | None) -> None:
        if len(self.changes) < SAMPLE_SIZE:
            self.changes.append((source_id, old, new))

    def decision(self) -> Decision:
        return Decision(
            tuple(self.writes),
            tuple(self.clears),
            dict(self.retries),
            frozenset(self.resolved),
            Counters(**self.counts),
            dict(self.attempts),
            tuple(self.changes),
        )


@dataclass(frozen=True)
class RetryLimit:
    """How often a row of the retry list is retried, and the passes each row has been retried in."""

    limit: int
    attempts: Mapping[str, int] = field(default_factory=dict)
    """Passes each row of the page has been on the retry list (a retry page's rows)."""


def decide(
    kind: PageKind,
    source_ids: Sequence[str],
    snapshot: Snapshot,
    columns: LinkColumns,
    retry: RetryLimit | None = None,
) -> Decision:
    """Decide a page of (normalised) source rows against what the server holds for them."""
    tally = _Tally()
    for source_id in source_ids:
        if source_id in snapshot.deferred and kind is not PageKind.RECONCILE:
            continue
        _decide_row(kind, source_id, snapshot, columns, tally)
    if kind is PageKind.RECONCILE:
        tally.count("stale", len(tally.clears))
    if kind is PageKind.RETRY and retry is not None:
        _limit_retries(tally, retry)
    return tally.decision()


def _limit_retries(tally: _Tally, retry: RetryLimit) -> None:
    """Rows retried again are on their next attempt; past the limit they leave the list."""
    for source_id in list(tally.retries):
        attempt = retry.attempts.get(source_id, 1) + 1
        if attempt > retry.limit:
            del tally.retries[source_id]
            tally.resolved.add(source_id)
            tally.count("gave_up")
        else:
            tally.attempts[source_id] = attempt


def _decide_row(
    kind: PageKind, source_id: str, snapshot: Snapshot, columns: LinkColumns, tally: _Tally
) -> None:
    best, conflict = winner(snapshot.mapping.get(source_id, ()))
    if kind is not PageKind.RECONCILE:
        tally.count("conflicts", int(conflict))
    row = snapshot.sources.get(source_id)
    if row is None:
        tally.count("no_source")
        tally.resolved.add(source_id)
        return
    if best is not None and best.unparsable:
        tally.count("invalid_keys")  # left alone: never overwritten or cleared on data that did not parse
        tally.resolved.add(source_id)
        return
    if best is None or best.profile is None:
        tally.resolved.add(source_id)
        if kind is PageKind.RECONCILE and source_id in snapshot.unparsed:
            tally.count("invalid_keys")  # named by data that did not parse: its link is not cleared
        elif kind is PageKind.RECONCILE:
            tally.clears.append(source_id)
            tally.change(source_id, odata.try_guid(row.get(columns.value)) or "", None)
        return
    if best.profile not in snapshot.profiles:
        if kind is not PageKind.RECONCILE:
            tally.count("no_profile")
        tally.retries[source_id] = (PROFILE_MISSING, best.profile)
        return
    tally.resolved.add(source_id)
    partition = snapshot.profiles[best.profile]
    if columns.is_current(row, best.profile, partition):
        if kind is not PageKind.RECONCILE:
            tally.count("already_correct")
        if kind is PageKind.RETRY:
            tally.count("retried_ok")
        return
    current = odata.try_guid(row.get(columns.value))
    if current is not None and current != best.profile:
        tally.count("relinked")
        tally.change(source_id, current, best.profile)
    tally.writes.append((source_id, best.profile, partition))
