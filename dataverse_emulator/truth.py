"""The expected link of every source row, computed from the mapping as a correct hydration would.

For a source table, the mapping rows that count are those of its Dataverse data sources whose
``msdynci_alternatevalue`` is the row's key (compared after lowercasing and removing braces). The
newest ``modifiedon`` wins (ties: the greater ``msdynci_alternatekeyid``). If the winner's profile does
not exist (yet), the row is *pending*: it cannot be linked yet, so whatever its lookup holds it counts as
neither right nor wrong. The truth ignores read lag: it is the state once everything has settled.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from typing import Any

from .generator import SOURCES
from .organization import Organization
from .schema import Relationship
from .store import quote


class LinkLookupError(ValueError):
    """The lookup asked for does not exist, or none was named and several could be meant."""


def lookup_for(org: Organization, table: str, lookup: str | None) -> Relationship | None:
    """The lookup to the profile table whose value is 'the link': the named one, or the only one.

    Naming is by the lookup's logical name, case-insensitively. With several lookups (CI-D's own and
    the product's) and none named, the answer would be a guess, so it is refused; with none at all and
    none named, there is no link yet (every expected link is missing).
    """
    candidates = [
        rel
        for rel in org.catalog.relationships.values()
        if rel.referencing_entity == table and rel.referenced_entity == "msdynci_customerprofile"
    ]
    if lookup is not None:
        for rel in candidates:
            if rel.referencing_attribute == lookup.lower():
                return rel
        known = ", ".join(r.referencing_attribute for r in candidates) or "none"
        raise LinkLookupError(f"{table} has no lookup {lookup!r} to msdynci_customerprofile (it has {known})")
    if len(candidates) > 1:
        names = ", ".join(r.referencing_attribute for r in candidates)
        raise LinkLookupError(f"{table} has several lookups to msdynci_customerprofile ({names}): name one")
    return candidates[0] if candidates else None


def links(org: Organization, table: str, lookup: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` with its expected and current link, ordered by key.

    The rows stream from SQLite a slice at a time (``Store.iterate``, which holds the store's lock
    until the last row), so with ``summarize`` a million rows are counted without being held. It
    takes about 30 µs a source row at a million (30–36 s, docs/emulator-scale.md): one query that
    ranks the mapping rows of every source row and joins the winners to the table and the profiles.
    """
    entity = org.entity(table)
    sources = [s.datasource for s in SOURCES if s.dataverse and s.table == table]
    rel = lookup_for(org, table, lookup)
    current = "t." + quote(rel.referencing_attribute) if rel else "NULL"
    current_pid = (
        "t." + quote(f"{rel.referencing_attribute}pid")
        if rel and f"{rel.referencing_attribute}pid" in entity.attributes
        else "NULL"
    )
    key = quote(entity.primary_id)
    # ``sid`` is cast to TEXT so it has the key's affinity: only then can SQLite index the winners for
    # the join instead of scanning them once per source row.
    marks = ",".join("?" * len(sources)) or "NULL"
    sql = f"""
        WITH ranked AS (
            SELECT CAST(lower(trim(msdynci_alternatevalue, '{{}}')) AS TEXT) COLLATE BINARY AS sid,
                   msdynci_lookupfield_customer AS profile,
                   ROW_NUMBER() OVER (
                       PARTITION BY lower(trim(msdynci_alternatevalue, '{{}}'))
                       ORDER BY modifiedon DESC, msdynci_alternatekeyid DESC
                   ) AS rn
            FROM msdynci_alternatekey
            WHERE msdynci_entityname = ? AND msdynci_datasourcename IN ({marks})
        ),
        winners AS MATERIALIZED (SELECT sid, profile FROM ranked WHERE rn = 1)
        SELECT t.{key} AS id, r.profile AS winner, p.msdynci_customerprofileid AS expected,
               p.partitionid AS expected_pid, {current} AS current, {current_pid} AS current_pid
        FROM {quote(table)} t
        LEFT JOIN winners r ON r.sid = t.{key}
        LEFT JOIN msdynci_customerprofile p ON p.msdynci_customerprofileid = r.profile
        ORDER BY t.{key}
    """
    for row in org.store.iterate(sql, [table, *sources]):
        yield {
            "id": row["id"],
            "expected": row["expected"],
            "expected_partition": row["expected_pid"],
            "current": row["current"],
            "current_partition": row["current_pid"],
            "pending": row["winner"] is not None and row["expected"] is None,
        }


OUTCOMES = ("correct", "missing", "wrong", "stale", "pending", "partition_mismatch")
"""What a row's link can be: as expected; absent; naming another profile; set where nothing is
expected; waiting for its profile to be written; or naming the right profile with the wrong
partition id."""


def outcome(row: dict[str, Any], partitioned: bool) -> str:
    """The outcome of one row from ``links``."""
    expected, current = row["expected"], row["current"]
    if row["pending"]:
        return "pending"
    if expected == current:
        if expected is not None and partitioned and row["expected_partition"] != row["current_partition"]:
            return "partition_mismatch"
        return "correct"
    if current is None:
        return "missing"
    return "stale" if expected is None else "wrong"


NOT_AS_EXPECTED = frozenset({"missing", "wrong", "stale", "partition_mismatch"})
"""The outcomes a correct hydration leaves none of (pending rows wait for CI-D, not for it)."""


def summarize(
    rows: Iterable[dict[str, Any]], partitioned: bool, keep: Container[str] = NOT_AS_EXPECTED
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Count rows by outcome; return the counts and the rows whose outcome is in ``keep``, with it.

    Only the kept rows are held in memory, so a summary of a million rows stays small.
    """
    counts = dict.fromkeys(("rows", "expected_links", *OUTCOMES), 0)
    listed: list[dict[str, Any]] = []
    for row in rows:
        result = outcome(row, partitioned)
        counts["rows"] += 1
        counts["expected_links"] += row["expected"] is not None
        counts[result] += 1
        if result in keep:
            listed.append({**row, "outcome": result})
    return counts, listed
