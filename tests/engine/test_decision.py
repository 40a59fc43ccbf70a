"""The core rule as a table: what a page of source rows needs written, cleared and retried."""

from __future__ import annotations

from typing import Any

import pytest

from hydration.checkpoints import Counters
from hydration.dataverse import odata
from hydration.decision import (
    PROFILE_MISSING,
    LinkColumns,
    PageKind,
    RetryLimit,
    Snapshot,
    decide,
    snapshot_of,
    stale_candidates,
    winner,
    with_other_forms,
)
from hydration.mapping import named_in_unparsed_form, unparsed_forms

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
S1 = "10000000-0000-0000-0000-000000000001"
S2 = "10000000-0000-0000-0000-000000000002"
P1 = "20000000-0000-0000-0000-000000000001"
P2 = "20000000-0000-0000-0000-000000000002"
LINK = "_msdynci_lookupfield_customerprofile_value"
PID = "msdynci_lookupfield_customerprofilepid"
COLUMNS = LinkColumns(LINK)
PARTITIONED = LinkColumns(LINK, PID)


def mapping(
    key: str, profile: str | None, modified: str = "2026-01-01T00:00:00Z", value: str | None = S1
) -> dict[str, Any]:
    return {
        "msdynci_alternatekeyid": key,
        "msdynci_alternatevalue": value,
        "_msdynci_lookupfield_customer_value": profile,
        "modifiedon": modified,
    }


def source(link: str | None = None, pid: str | None = None) -> dict[str, Any]:
    return {"contactid": S1, LINK: link, PID: pid}


def snap(
    mapping_rows: list[dict[str, Any]],
    *,
    row: dict[str, Any] | None = None,
    profiles: dict[str, str | None] | None = None,
    deferred: frozenset[str] = frozenset(),
    unparsed: frozenset[str] = frozenset(),
) -> Snapshot:
    return Snapshot(
        sources={} if row is None else {S1: row},
        mapping={S1: mapping_rows} if mapping_rows else {},
        profiles={P1: None, P2: None} if profiles is None else profiles,
        deferred=deferred,
        unparsed=unparsed,
    )


CASES: list[tuple[str, PageKind, Snapshot, LinkColumns, dict[str, Any]]] = [
    (
        "missing link is written",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source()),
        COLUMNS,
        {"writes": ((S1, P1, None),)},
    ),
    (
        "correct link is not written",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P1)),
        COLUMNS,
        {"counters": Counters(already_correct=1)},
    ),
    (
        "wrong link is rewritten: a relink, sampled",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P2)),
        COLUMNS,
        {"writes": ((S1, P1, None),), "counters": Counters(relinked=1), "changes": ((S1, P2, P1),)},
    ),
    (
        "upper-case wrong link is a relink, sampled in lower case",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P2.upper())),
        COLUMNS,
        {"writes": ((S1, P1, None),), "counters": Counters(relinked=1), "changes": ((S1, P2, P1),)},
    ),
    (
        "retry page: a wrong link is a relink too",
        PageKind.RETRY,
        snap([mapping(A, P1)], row=source(P2)),
        COLUMNS,
        {"writes": ((S1, P1, None),), "counters": Counters(relinked=1), "changes": ((S1, P2, P1),)},
    ),
    (
        "upper-case current link is correct",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P1.upper())),
        COLUMNS,
        {"counters": Counters(already_correct=1)},
    ),
    (
        "upper-case profile in the mapping",
        PageKind.MAPPING,
        snap([mapping(A, P1.upper())], row=source(P1)),
        COLUMNS,
        {"counters": Counters(already_correct=1)},
    ),
    (
        "conflicting sources: the newest wins",
        PageKind.MAPPING,
        snap([mapping(A, P1, "2026-01-02T00:00:00Z"), mapping(B, P2, "2026-01-01T00:00:00Z")], row=source()),
        COLUMNS,
        {"writes": ((S1, P1, None),), "counters": Counters(conflicts=1)},
    ),
    (
        "a tie goes to the greater mapping key",
        PageKind.MAPPING,
        snap([mapping(B, P2), mapping(A, P1)], row=source()),
        COLUMNS,
        {"writes": ((S1, P2, None),), "counters": Counters(conflicts=1)},
    ),
    (
        "merged profiles: two rows name the same profile, no conflict",
        PageKind.MAPPING,
        snap([mapping(A, P1), mapping(B, P1)], row=source()),
        COLUMNS,
        {"writes": ((S1, P1, None),)},
    ),
    (
        "missing profile goes to the retry list",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(), profiles={}),
        COLUMNS,
        {"retries": {S1: (PROFILE_MISSING, P1)}, "resolved": frozenset(), "counters": Counters(no_profile=1)},
    ),
    (
        "deferred row is left to the later page",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(), deferred=frozenset({S1})),
        COLUMNS,
        {"resolved": frozenset()},
    ),
    (
        "source row gone",
        PageKind.MAPPING,
        snap([mapping(A, P1)]),
        COLUMNS,
        {"counters": Counters(no_source=1)},
    ),
    (
        "unparsable profile id is an invalid key, link left alone",
        PageKind.MAPPING,
        snap([mapping(A, "not-a-guid")], row=source(P2)),
        COLUMNS,
        {"counters": Counters(invalid_keys=1)},
    ),
    (
        "partition id differs: rewritten",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P1, "old"), profiles={P1: "cid-1"}),
        PARTITIONED,
        {"writes": ((S1, P1, "cid-1"),)},
    ),
    (
        "partition id equal: correct",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(P1, "cid-1"), profiles={P1: "cid-1"}),
        PARTITIONED,
        {"counters": Counters(already_correct=1)},
    ),
    (
        "retry page counts a row now correct",
        PageKind.RETRY,
        snap([mapping(A, P1)], row=source(P1)),
        COLUMNS,
        {"counters": Counters(already_correct=1, retried_ok=1)},
    ),
    (
        "reconcile: no mapping row means stale",
        PageKind.RECONCILE,
        snap([], row=source(P1)),
        COLUMNS,
        {"clears": (S1,), "counters": Counters(stale=1), "changes": ((S1, P1, None),)},
    ),
    (
        "reconcile: winner without a profile means stale",
        PageKind.RECONCILE,
        snap([mapping(A, None)], row=source(P1)),
        COLUMNS,
        {"clears": (S1,), "counters": Counters(stale=1), "changes": ((S1, P1, None),)},
    ),
    (
        "reconcile: unparsable profile is never cleared",
        PageKind.RECONCILE,
        snap([mapping(A, "{broken"), mapping(B, P1, "2020-01-01T00:00:00Z")], row=source(P1)),
        COLUMNS,
        {"counters": Counters(invalid_keys=1)},
    ),
    (
        "reconcile: no mapping row found but one names the row as {guid}: an invalid key, never cleared",
        PageKind.RECONCILE,
        snap([], row=source(P1), unparsed=frozenset({S1})),
        COLUMNS,
        {"counters": Counters(invalid_keys=1)},
    ),
    (
        "reconcile: winner without a profile but a {guid} row names the row too: never cleared",
        PageKind.RECONCILE,
        snap([mapping(A, None)], row=source(P1), unparsed=frozenset({S1})),
        COLUMNS,
        {"counters": Counters(invalid_keys=1)},
    ),
    (
        "reconcile: a {guid} row beside a parsed winner changes nothing",
        PageKind.RECONCILE,
        snap([mapping(A, P2)], row=source(P1), unparsed=frozenset({S1})),
        COLUMNS,
        {"writes": ((S1, P2, None),), "counters": Counters(relinked=1), "changes": ((S1, P1, P2),)},
    ),
    (
        "mapping: a {guid} row beside a parsed winner changes nothing",
        PageKind.MAPPING,
        snap([mapping(A, P1)], row=source(), unparsed=frozenset({S1})),
        COLUMNS,
        {"writes": ((S1, P1, None),)},
    ),
    (
        "reconcile: wrong link is fixed, a relink",
        PageKind.RECONCILE,
        snap([mapping(A, P2)], row=source(P1)),
        COLUMNS,
        {"writes": ((S1, P2, None),), "counters": Counters(relinked=1), "changes": ((S1, P1, P2),)},
    ),
    (
        "reconcile: missing profile is retried, not cleared",
        PageKind.RECONCILE,
        snap([mapping(A, P1)], row=source(P2), profiles={}),
        COLUMNS,
        {"retries": {S1: (PROFILE_MISSING, P1)}, "resolved": frozenset()},
    ),
    (
        "reconcile: correct link counts nothing",
        PageKind.RECONCILE,
        snap([mapping(A, P1)], row=source(P1)),
        COLUMNS,
        {},
    ),
]


@pytest.mark.parametrize(
    ("name", "kind", "snapshot", "columns", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_decide(
    name: str, kind: PageKind, snapshot: Snapshot, columns: LinkColumns, expected: dict[str, Any]
) -> None:
    decision = decide(kind, [S1], snapshot, columns)
    default_resolved = frozenset({S1})
    assert decision.writes == expected.get("writes", ())
    assert decision.clears == expected.get("clears", ())
    assert dict(decision.retries) == expected.get("retries", {})
    assert decision.resolved == expected.get("resolved", default_resolved)
    assert decision.counters == expected.get("counters", Counters())
    assert decision.changes == expected.get("changes", ())


def test_a_page_samples_at_most_ten_changes_and_counts_every_relink() -> None:
    ids = [f"10000000-0000-0000-0000-{i:012d}" for i in range(25)]
    snapshot = Snapshot(
        sources={i: {"contactid": i, LINK: P2} for i in ids},
        mapping={i: [mapping(A, P1, value=i)] for i in ids},
        profiles={P1: None, P2: None},
    )
    decision = decide(PageKind.MAPPING, ids, snapshot, COLUMNS)
    assert decision.counters.relinked == 25
    assert decision.changes == tuple((i, P2, P1) for i in ids[:10])


def test_the_winner_is_the_newest_row_and_disagreement_is_a_conflict() -> None:
    best, conflict = winner([mapping(A, P1, "2026-01-01T00:00:00Z"), mapping(B, P2, "2026-02-01T00:00:00Z")])
    assert best is not None
    assert best.profile == P2
    assert conflict
    assert winner([]) == (None, False)


def test_a_snapshot_normalises_keys_and_drops_mapping_rows_that_name_no_guid() -> None:
    rows = {
        "source": [{"contactid": S1.upper(), LINK: None}],
        "mapping": [mapping(A, P1, value=S1.upper()), mapping(B, P1, value="not-a-guid")],
        "later": [{"msdynci_alternatevalue": S2.upper()}],
        "profile": [{"msdynci_customerprofileid": P1.upper(), "partitionid": None}],
    }
    snapshot = snapshot_of(rows, key="contactid", known_sources=None)
    assert set(snapshot.sources) == {S1}
    assert set(snapshot.mapping) == {S1}
    assert len(snapshot.mapping[S1]) == 1
    assert snapshot.deferred == frozenset({S2})
    assert dict(snapshot.profiles) == {P1: None}


OTHER_FORMS = [
    # (alternate value of a row found by its key's other forms, lands in mapping, marks the row unparsed)
    ("{" + S1 + "}", False, True),
    ("{" + S1.upper() + "}", False, True),
    (S1.replace("-", ""), False, True),
    ("{" + S1.replace("-", "").upper() + "}", False, True),
    (S1.upper(), True, False),
    ("(" + S1 + ")", False, False),
    ("{not-a-guid}", False, False),
    (None, False, False),
]


@pytest.mark.parametrize(("value", "parsed", "unparsed"), OTHER_FORMS)
def test_rows_found_by_other_forms_are_mapping_rows_or_mark_their_row(
    value: str | None, parsed: bool, unparsed: bool
) -> None:
    before = snap([], row=source(P1))
    merged = with_other_forms(before, [mapping(A, P1, value=value)])
    assert (S1 in merged.mapping) is parsed
    assert merged.unparsed == (frozenset({S1}) if unparsed else frozenset())
    decision = decide(PageKind.RECONCILE, [S1], merged, COLUMNS)
    assert decision.clears == (() if parsed or unparsed else (S1,))


def test_a_row_found_twice_is_merged_once() -> None:
    before = snap([mapping(A, P1)], row=source(P1))
    merged = with_other_forms(before, [mapping(A.upper(), P1, value=S1.upper())])
    assert len(merged.mapping[S1]) == 1


def test_stale_candidates_are_the_rows_the_reconcile_would_clear() -> None:
    snapshot = Snapshot(
        sources={},
        mapping={S1: [mapping(A, None)], S2: [mapping(B, P1, value=S2)], A: [mapping(B, "{x", value=A)]},
        profiles={P1: None},
    )
    assert stale_candidates(snapshot, [S1, S2, A, B]) == [S1, B]


def test_every_other_form_of_a_key_is_refused_and_names_the_key_back() -> None:
    forms = unparsed_forms(S1.upper())
    assert len(set(forms)) == 3
    for form in forms:
        assert odata.try_guid(form) is None
        assert named_in_unparsed_form(form) == S1


def test_several_rows_are_decided_independently() -> None:
    snapshot = Snapshot(
        sources={S1: source(), S2: {"contactid": S2, LINK: P1}},
        mapping={S1: [mapping(A, P1)], S2: [mapping(B, P1, value=S2)]},
        profiles={P1: None},
    )
    decision = decide(PageKind.MAPPING, [S1, S2], snapshot, COLUMNS)
    assert decision.writes == ((S1, P1, None),)
    assert decision.counters == Counters(already_correct=1)


RETRY_LIMIT_CASES = [
    # (attempts so far, limit, still retried, gave up)
    (1, 3, True, False),
    (2, 3, True, False),
    (3, 3, False, True),
    (9, 3, False, True),
]


@pytest.mark.parametrize(("attempts", "limit", "retried", "gave_up"), RETRY_LIMIT_CASES)
def test_retry_limits(attempts: int, limit: int, retried: bool, gave_up: bool) -> None:
    snapshot = snap([mapping(A, P1)], row=source(), profiles={})  # the profile is still missing
    decision = decide(PageKind.RETRY, [S1], snapshot, COLUMNS, RetryLimit(limit, {S1: attempts}))
    assert (S1 in decision.retries) is retried
    assert decision.counters.gave_up == int(gave_up)
    assert (S1 in decision.resolved) is gave_up  # a row given up leaves the list
    assert decision.attempts == ({S1: attempts + 1} if retried else {})


def test_the_retry_limit_applies_to_the_retry_list_only() -> None:
    snapshot = snap([mapping(A, P1)], row=source(), profiles={})
    decision = decide(PageKind.MAPPING, [S1], snapshot, COLUMNS, RetryLimit(1, {S1: 5}))
    assert S1 in decision.retries
    assert decision.counters.gave_up == 0
