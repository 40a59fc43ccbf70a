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
from typing import Any

from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import NotFoundError
from .dataverse.metadata import Metadata
from .manifest import Entry, Manifest, entry_problem, primary_key_problem
from .mapping import MAPPING_SET, sources_filter
from .sample import SampleFigures, SampleVerdict, judge, note, skip_reason

LOOKUP_CHUNK = 200
"""Sampled keys looked up per GET. Dataverse refuses a URL over 32 KB (414) and a GUID costs about 43
characters of an encoded ``In`` filter, so 760 keys would not fit; 200 (about 9 KB) leave room for long
table and column names."""


@dataclass
class Eligibility:
    """The verdict over the chosen tables of a manifest."""

    eligible: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Dataverse table → the CI-D (data source, table) pairs to hydrate it from."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Dataverse table → why it is Skipped (every entry of it was ineligible)."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Dataverse table → entries left out of an otherwise eligible table, with the reason."""
    sampled: dict[str, list[str]] = field(default_factory=dict)
    """Dataverse table → what the sample found in its eligible entries when not every row matched."""


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
            kept, reasons, found = self._table(manifest, table)
            if kept:
                verdict.eligible[table] = [e.source for e in kept]
                if reasons:
                    verdict.notes[table] = reasons
                if found:
                    verdict.sampled[table] = found
            else:
                verdict.skipped[table] = " ".join(reasons)[:2000]
        return verdict

    def _table(self, manifest: Manifest, table: str) -> tuple[list[Entry], list[str], list[str]]:
        """The entries of one table that may be linked, why the others may not, and sample notes."""
        reasons: list[str] = []
        kept: list[Entry] = []
        for entry in manifest.entries_of(table):
            problem = entry_problem(entry, manifest)
            if problem is None:
                kept.append(entry)
            else:
                reasons.append(problem)
        if not kept:
            return kept, reasons, []
        try:
            info = self.metadata.table(table)
        except NotFoundError as exc:
            return [], reasons + [f"{e.data_source}/{e.entity} is skipped: {exc}" for e in kept], []
        still: list[Entry] = []
        found: list[str] = []
        for entry in kept:
            problem = primary_key_problem(entry, info.primary_id) or self._sample_problem(
                entry, info.entity_set, info.primary_id, found
            )
            if problem:
                reasons.append(problem)
            else:
                still.append(entry)
        return still, reasons, found

    def _sample_problem(self, entry: Entry, entity_set: str, primary_id: str, found: list[str]) -> str | None:
        """Why the sample rules an entry out, else None (appending to ``found`` what it saw)."""
        figures = self.figures(entry, entity_set, primary_id)
        verdict = judge(figures, self.sample.min_match)
        if verdict is not SampleVerdict.PROCEEDS:
            return skip_reason(entry, primary_id, figures, verdict, self.sample.min_match)
        text = note(entry, figures, self.sample.min_match)
        if text is not None:
            found.append(text)
        return None

    def figures(self, entry: Entry, entity_set: str, primary_id: str) -> SampleFigures:
        """Sample the entry's newest mapping rows and count those that name an existing row.

        With the sample off (size 0) one row is read, so that a source with no mapping rows at all (a
        typo in its names) is still Skipped; nothing is looked up, and the row read counts as matching.
        """
        params = {
            "$select": "msdynci_alternatevalue",
            "$filter": sources_filter([entry.source]),
            "$orderby": "modifiedon desc",
            "$top": str(max(1, self.sample.size)),
        }
        rows = self.client.get_json(MAPPING_SET, kind="sample_mapping", params=params).get("value") or []
        values = [odata.try_guid(r.get("msdynci_alternatevalue")) for r in rows]
        if self.sample.size <= 0:
            return SampleFigures(sampled=len(rows), matched=len(rows), invalid=0)
        existing = self._existing(entity_set, primary_id, sorted({v for v in values if v}))
        return SampleFigures(
            sampled=len(values),
            matched=sum(1 for v in values if v in existing),
            invalid=sum(1 for v in values if v is None),
        )

    def _existing(self, entity_set: str, primary_id: str, keys: Sequence[str]) -> set[str]:
        """Which of these keys name a row of the table, asked a chunk at a time (see ``LOOKUP_CHUNK``)."""
        existing: set[str] = set()
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            lookup = {"$select": primary_id, "$filter": odata.in_filter(primary_id, chunk)}
            answer: dict[str, Any] = self.client.get_json(entity_set, kind="sample_rows", params=lookup)
            existing.update(k for r in answer.get("value") or [] if (k := odata.try_guid(r.get(primary_id))))
        return existing
