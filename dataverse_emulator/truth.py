"""The expected link of every source row, computed from the mapping as a correct hydration would.

For a source table, the mapping rows that count are those of its Dataverse data sources whose
``msdynci_alternatevalue`` is the row's key (compared after lowercasing and removing braces). The
newest ``modifiedon`` wins (ties: the greater ``msdynci_alternatekeyid``). If the winner's profile does
not exist (yet), the row is *pending*: it cannot be linked, and it is not linked to anything else either.
The truth ignores read lag: it is the state once everything has settled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .generator import SOURCES
from .organization import Organization
from .schema import Relationship
from .store import quote


def lookup_for(org: Organization, table: str, lookup: str | None) -> Relationship | None:
    """The lookup to the profile table whose value is 'the link' (a named one, or the only one)."""
    for rel in org.catalog.relationships.values():
        if (
            rel.referencing_entity == table
            and rel.referenced_entity == "msdynci_customerprofile"
            and (lookup is None or rel.referencing_attribute == lookup.lower())
        ):
            return rel
    return None


def links(org: Organization, table: str, lookup: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` with its expected and current link, ordered by key."""
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
    marks = ",".join("?" * len(sources)) or "NULL"
    sql = f"""
        WITH ranked AS (
            SELECT lower(trim(msdynci_alternatevalue, '{{}}')) AS sid,
                   msdynci_lookupfield_customer AS profile,
                   ROW_NUMBER() OVER (
                       PARTITION BY lower(trim(msdynci_alternatevalue, '{{}}'))
                       ORDER BY modifiedon DESC, msdynci_alternatekeyid DESC
                   ) AS rn
            FROM msdynci_alternatekey
            WHERE msdynci_entityname = ? AND msdynci_datasourcename IN ({marks})
        )
        SELECT t.{key} AS id, r.profile AS winner, p.msdynci_customerprofileid AS expected,
               p.partitionid AS expected_pid, {current} AS current, {current_pid} AS current_pid
        FROM {quote(table)} t
        LEFT JOIN ranked r ON r.sid = t.{key} AND r.rn = 1
        LEFT JOIN msdynci_customerprofile p ON p.msdynci_customerprofileid = r.profile
        ORDER BY t.{key}
    """
    for row in org.store.fetch(sql, [table, *sources]):
        yield {
            "id": row["id"],
            "expected": row["expected"],
            "expected_partition": row["expected_pid"],
            "current": row["current"],
            "current_partition": row["current_pid"],
            "pending": row["winner"] is not None and row["expected"] is None,
        }


def summarize(
    rows: Iterator[dict[str, Any]], partitioned: bool
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Count rows by outcome; return the counts and the rows that are not as expected."""
    counts = dict.fromkeys(
        ("rows", "expected_links", "correct", "missing", "wrong", "stale", "pending", "partition_mismatch"), 0
    )
    wrong_rows: list[dict[str, Any]] = []
    for row in rows:
        counts["rows"] += 1
        expected, current = row["expected"], row["current"]
        counts["expected_links"] += expected is not None
        counts["pending"] += row["pending"]
        if (expected is None and current is None) or row["pending"]:
            counts["correct"] += not row["pending"]
            continue
        if expected == current:
            if partitioned and row["expected_partition"] != row["current_partition"]:
                counts["partition_mismatch"] += 1
                wrong_rows.append(row)
            else:
                counts["correct"] += 1
            continue
        outcome = "missing" if current is None else ("stale" if expected is None else "wrong")
        counts[outcome] += 1
        wrong_rows.append({**row, "outcome": outcome})
    return counts, wrong_rows
