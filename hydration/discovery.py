"""What the mapping table holds: the distinct (data source, CI-D table) pairs, to help write a manifest.

The pairs are found by a skip scan: one request per distinct pair, each asking for the first mapping row
ordered after the pair found before, so the cost is the number of pairs, not the number of mapping rows
(a million-row mapping with five pairs costs six small requests). Only standard ``$filter``,
``$orderby`` and ``$top`` are used. Dataverse compares strings case-insensitively, so two names that
differ only in case are reported once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import NotFoundError
from .dataverse.metadata import Metadata
from .mapping import MAPPING_SET

_SOURCE = "msdynci_datasourcename"
_ENTITY = "msdynci_entityname"
MAX_PAIRS = 1000


@dataclass(frozen=True)
class Pair:
    """One (data source, CI-D table) pair of the mapping, with what metadata says about the table."""

    data_source: str
    entity: str
    dataverse_table: str | None
    """The Dataverse table of that logical name, if one exists."""
    primary_key: str | None


def _after(source: str, entity: str) -> str:
    s, e = odata.string(source), odata.string(entity)
    return f"({_SOURCE} gt {s} or ({_SOURCE} eq {s} and {_ENTITY} gt {e}))"


def pairs(client: DataverseClient) -> list[tuple[str, str]]:
    """The distinct pairs, in order."""
    found: list[tuple[str, str]] = []
    while len(found) < MAX_PAIRS:
        terms = [f"{_SOURCE} ne null", f"{_ENTITY} ne null"]
        if found:
            terms.append(_after(*found[-1]))
        params = {
            "$select": f"{_SOURCE},{_ENTITY}",
            "$filter": " and ".join(terms),
            "$orderby": f"{_SOURCE} asc,{_ENTITY} asc",
            "$top": "1",
        }
        rows = client.get_json(MAPPING_SET, kind="discover", params=params).get("value") or []
        if not rows:
            break
        found.append((str(rows[0][_SOURCE]), str(rows[0][_ENTITY])))
    return found


def discover(client: DataverseClient, metadata: Metadata | None = None) -> list[Pair]:
    """The pairs, each with the Dataverse table of the same logical name and its primary key, if any."""
    metadata = metadata or Metadata(client)
    result: list[Pair] = []
    for source, entity in pairs(client):
        table = key = None
        try:
            info = metadata.table(entity.lower())
            table, key = info.logical_name, info.primary_id
        except (NotFoundError, odata.InvalidNameError):
            pass
        result.append(Pair(source, entity, table, key))
    return result


def draft_manifest(organization_url: str, found: list[Pair]) -> dict[str, object]:
    """A starting manifest from what was found; every entry must still be checked by an administrator."""
    tables = [
        {
            "dataSource": p.data_source,
            "entity": p.entity,
            "dataverseTable": p.dataverse_table,
            "connector": "Dataverse",
            "primaryKey": p.primary_key,
        }
        for p in found
        if p.dataverse_table and p.primary_key
    ]
    return {
        "version": 1,
        "organizationUrl": organization_url,
        "outputMode": "dataverse",
        "environmentType": "individuals",
        "tables": tables,
    }
