"""Which tables a run may link: the manifest's rules, then metadata, then a sample of the data.

The rules that need only the manifest live in ``manifest``; this module adds those that need
Dataverse: the table must exist and its ``PrimaryIdAttribute`` must be the key used in unification,
and a sample of recent mapping rows must name rows that exist in the table. Dataverse is asked only
about entries still eligible. Entries that feed the same Dataverse table are judged one by one: a table
is Skipped only when every entry of it is, and an ineligible entry of an eligible table is left out
and named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import NotFoundError
from .dataverse.metadata import Metadata
from .linking import MAPPING_SET, sources_filter
from .manifest import Entry, Manifest, entry_problem, primary_key_problem


@dataclass
class Eligibility:
    """The verdict over the chosen tables of a manifest."""

    eligible: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Dataverse table → the CI-D (data source, table) pairs to hydrate it from."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Dataverse table → why it is Skipped (every entry of it was ineligible)."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Dataverse table → entries left out of an otherwise eligible table, with the reason."""


@dataclass(frozen=True)
class SampleSettings:
    """How the data is checked: rows sampled per entry (0: no sample) and the share that must match."""

    size: int
    min_match: float


class EligibilityCheck:
    """Judges a manifest's tables against one organization."""

    def __init__(self, *, client: DataverseClient, metadata: Metadata, sample: SampleSettings) -> None:
        self.client = client
        self.metadata = metadata
        self.sample = sample

    def verdict(self, manifest: Manifest, tables: Sequence[str]) -> Eligibility:
        """Apply every rule to the chosen tables."""
        verdict = Eligibility()
        for table in tables:
            kept, reasons = self._table(manifest, table)
            if kept:
                verdict.eligible[table] = [e.source for e in kept]
                if reasons:
                    verdict.notes[table] = reasons
            else:
                verdict.skipped[table] = " ".join(reasons)[:2000]
        return verdict

    def _table(self, manifest: Manifest, table: str) -> tuple[list[Entry], list[str]]:
        """The entries of one table that may be linked, and why the others may not."""
        reasons: list[str] = []
        kept: list[Entry] = []
        for entry in manifest.entries_of(table):
            problem = entry_problem(entry, manifest)
            if problem is None:
                kept.append(entry)
            else:
                reasons.append(problem)
        if not kept:
            return kept, reasons
        try:
            info = self.metadata.table(table)
        except NotFoundError as exc:
            return [], reasons + [f"{e.data_source}/{e.entity} is skipped: {exc}" for e in kept]
        still: list[Entry] = []
        for entry in kept:
            problem = primary_key_problem(entry, info.primary_id) or self._sample_problem(
                entry, info.entity_set, info.primary_id
            )
            if problem:
                reasons.append(problem)
            else:
                still.append(entry)
        return still, reasons

    def _sample_problem(self, entry: Entry, entity_set: str, primary_id: str) -> str | None:
        """Check the manifest against the data: sampled mapping rows must name existing source rows."""
        size = self.sample.size
        if size <= 0:
            return None
        params = {
            "$select": "msdynci_alternatevalue",
            "$filter": sources_filter([entry.source]),
            "$orderby": "modifiedon desc",
            "$top": str(size),
        }
        rows = self.client.get_json(MAPPING_SET, kind="sample_mapping", params=params).get("value") or []
        if not rows:
            return None
        keys = {k for r in rows if (k := odata.try_guid(r.get("msdynci_alternatevalue")))}
        found = 0
        if keys:
            lookup = {"$select": primary_id, "$filter": odata.in_filter(primary_id, sorted(keys))}
            answer = self.client.get_json(entity_set, kind="sample_rows", params=lookup)
            found = sum(1 for r in answer.get("value") or [] if odata.try_guid(r.get(primary_id)) in keys)
        share = found / len(rows)
        if share >= self.sample.min_match:
            return None
        return (
            f"{entry.data_source}/{entry.entity} is skipped because only {found} of {len(rows)} sampled "
            f"mapping rows ({share:.0%}) name an existing {entry.table} row: the primary key used in "
            "unification may not be the table's primary key, or the data was ingested from another "
            "Dataverse organization."
        )
