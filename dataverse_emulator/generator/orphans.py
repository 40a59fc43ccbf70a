"""Source rows deleted after unification: their mapping rows stay behind and name nothing."""

from __future__ import annotations

from ..organization import Organization
from ..store import quote
from .rows import SOURCES

ORPHAN_TABLES = ("contact", "lead")
"""The source tables whose rows ``orphan`` can delete."""


def orphan_shares(value: object) -> dict[str, float]:
    """Read the ``orphans`` seed parameter, ``{source table: share of its mapped rows}``, strictly."""
    if not isinstance(value, dict):
        raise ValueError("'orphans' must be an object: source table -> share of its mapped rows to delete")
    for table, share in value.items():
        if table not in ORPHAN_TABLES:
            raise ValueError(f"'orphans' names {table!r}; only {', '.join(ORPHAN_TABLES)} can be orphaned")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"'orphans' share of {table} must be a number from 0 to 1")
    return {table: float(share) for table, share in value.items()}


def orphan(org: Organization, table: str, share: float) -> int:
    """Delete ``share`` of a table's mapped rows; return how many mapping rows now name no row.

    Users delete leads and contacts after a unification; their mapping rows stay behind until the next
    unification, as CI-D's do. The rows deleted are those whose first mapping row has the lowest id:
    ids come from the seed, so the choice is deterministic, and it is unrelated to ``modifiedon``, so a
    sample of the newest mapping rows sees about ``share`` of them orphaned. A row named by several
    data sources orphans each of its mapping rows.
    """
    entity = org.entity(table)
    key = quote(entity.primary_id)
    sources = [s for s in SOURCES if s.dataverse and s.table == table]
    where = " OR ".join("(m.msdynci_datasourcename = ? AND m.msdynci_entityname = ?)" for _ in sources)
    mapped = org.store.fetch(
        f"SELECT t.{key} AS id, COUNT(*) AS mappings FROM {quote(table)} t "
        f"JOIN msdynci_alternatekey m ON lower(trim(m.msdynci_alternatevalue, '{{}}')) = t.{key} "
        f"WHERE {where} GROUP BY t.{key} ORDER BY MIN(m.msdynci_alternatekeyid)",
        [name for s in sources for name in (s.datasource, s.entity)],
    )
    chosen = mapped[: round(share * len(mapped))]
    for row in chosen:
        org.store.delete(entity, row["id"])
    return sum(int(row["mappings"]) for row in chosen)
