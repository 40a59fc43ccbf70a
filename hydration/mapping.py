"""The mapping table's vocabulary and the queries a pass sends, as values: no I/O here.

CI-D's output names each unified source row in ``msdynci_alternatekey`` (its alternate value is the
source row's key, its lookup the profile). A pass reads those rows in a closed window of
``modifiedon``, key after key, and for each page reads the source rows' current links, every mapping
row naming them and the profiles those name. This module builds each of those queries once, so the
readers, the discovery and the planner speak the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from .dataverse import odata
from .dataverse.batch import Part
from .dataverse.metadata import LookupInfo, TableInfo

MAPPING_SET = "msdynci_alternatekeys"
MAPPING_KEY = "msdynci_alternatekeyid"
MAPPING_VALUE = "msdynci_alternatevalue"
MAPPING_LOOKUP = "msdynci_lookupfield_customer"
MAPPING_PROFILE = f"_{MAPPING_LOOKUP}_value"
PROFILE_SET = "msdynci_customerprofiles"
PROFILE_KEY = "msdynci_customerprofileid"
_DECIDING_COLUMNS = f"{MAPPING_KEY},{MAPPING_VALUE},{MAPPING_PROFILE},modifiedon"
"""What deciding a source row's link reads of each mapping row naming it."""
_SAFE = "$,'()=/:@*"
"""Characters a query option keeps literal: OData's own syntax, safe inside a ``$batch`` request line."""


def query_url(entity_set: str, options: dict[str, str]) -> str:
    """A relative URL with percent-encoded query options, safe inside a ``$batch`` request line."""
    return entity_set + "?" + "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in options.items())


def sources_filter(sources: Sequence[tuple[str, str]]) -> str:
    """The mapping rows of a table's CI-D data sources."""
    terms = [
        f"(msdynci_datasourcename eq {odata.string(ds)} and msdynci_entityname eq {odata.string(entity)})"
        for ds, entity in sources
    ]
    return "(" + " or ".join(terms) + ")"


def unparsed_forms(guid: str) -> tuple[str, ...]:
    """The forms of a source row's key that name it but that ``odata.normalize_guid`` refuses.

    Braced (``{guid}``), hyphen-less and both: forms a source may write, which the ``In`` lookups by bare
    GUID never find. Dataverse compares strings case-insensitively, so one case of each is enough.
    """
    hyphenated = odata.normalize_guid(guid)
    bare = hyphenated.replace("-", "")
    return (f"{{{hyphenated}}}", bare, f"{{{bare}}}")


def named_in_unparsed_form(value: object) -> str | None:
    """The source key (normalised) that an alternate value names in one of ``unparsed_forms``, or None."""
    if not isinstance(value, str):
        return None
    text = value[1:-1] if value.startswith("{") and value.endswith("}") else value
    if len(text) == 32:
        text = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return odata.try_guid(text)


@dataclass(frozen=True)
class Target:
    """Everything a pass needs to know about one source table."""

    table: TableInfo
    lookup: LookupInfo
    sources: tuple[tuple[str, str], ...]
    update_multiple: bool

    @property
    def link_column(self) -> str:
        """The lookup's value column (``_<lookup>_value``), what a read of the current link selects."""
        return odata.lookup_value(self.lookup.attribute)

    def source_columns(self) -> list[str]:
        """The columns a read of source rows selects: the key, the link and its partition id."""
        columns = [self.table.primary_id, self.link_column]
        if self.lookup.partition_column:
            columns.append(self.lookup.partition_column)
        return columns


@dataclass(frozen=True)
class Queries:
    """The queries of one table's pass, as URLs and ``$batch`` parts."""

    target: Target
    page_size: int
    read_chunk: int

    # -- the pages a pass walks ---------------------------------------------------------------

    def window_filter(self, start: datetime | None, end: datetime, after: str | None) -> str:
        """The table's mapping rows in the window ``[start, end)`` with keys after ``after``."""
        terms = [sources_filter(self.target.sources), f"modifiedon lt {odata.moment(end)}"]
        if start is not None:
            terms.append(f"modifiedon ge {odata.moment(start)}")
        if after is not None:
            terms.append(f"{MAPPING_KEY} gt {odata.normalize_guid(after)}")
        return " and ".join(terms)

    def mapping_page(self, start: datetime | None, end: datetime, after: str | None) -> str:
        """A page of the window's mapping rows after key ``after``, in key order."""
        return query_url(
            MAPPING_SET,
            {
                "$select": f"{MAPPING_KEY},{MAPPING_VALUE},{MAPPING_PROFILE}",
                "$filter": self.window_filter(start, end, after),
                "$orderby": f"{MAPPING_KEY} asc",
            },
        )

    def linked_page(self, after: str | None) -> str:
        """A page of source rows that have a link, after key ``after``, in key order (the reconcile)."""
        key = self.target.table.primary_id
        terms = [f"{self.target.link_column} ne null"]
        if after is not None:
            terms.append(f"{key} gt {odata.normalize_guid(after)}")
        return query_url(
            self.target.table.entity_set,
            {
                "$select": ",".join(self.target.source_columns()),
                "$filter": " and ".join(terms),
                "$orderby": f"{key} asc",
            },
        )

    def page_part(self, url: str) -> Part:
        """A page query as a ``$batch`` part, with the page size asked for."""
        return Part("GET", url, None, self.prefer)

    @property
    def prefer(self) -> dict[str, str]:
        """The page size asked for: only a maximum, the server may serve fewer rows."""
        return {"Prefer": f"odata.maxpagesize={self.page_size}"}

    # -- what deciding a page needs -----------------------------------------------------------

    def snapshot_parts(
        self, source_ids: Sequence[str], *, later: str | None, read_sources: bool
    ) -> list[tuple[str, Part]]:
        """Labelled GETs for a page's source rows: their links, their mapping rows, later mentions.

        ``later`` (the window after this page) finds the rows a later page names again; ``read_sources``
        is false when the page already carries the rows' links (the reconcile).
        """
        key, parts = self.target.table.primary_id, []
        for start in range(0, len(source_ids), self.read_chunk):
            chunk = source_ids[start : start + self.read_chunk]
            if read_sources:
                columns = ",".join(self.target.source_columns())
                options = {"$select": columns, "$filter": odata.in_filter(key, chunk)}
                parts.append(("source", Part("GET", query_url(self.target.table.entity_set, options))))
            named = odata.in_filter(MAPPING_VALUE, chunk)
            options = {
                "$select": _DECIDING_COLUMNS,
                "$filter": f"{sources_filter(self.target.sources)} and {named}",
            }
            parts.append(("mapping", Part("GET", query_url(MAPPING_SET, options))))
            if later is not None:
                options = {"$select": MAPPING_VALUE, "$filter": f"{later} and {named}"}
                parts.append(("later", Part("GET", query_url(MAPPING_SET, options))))
        return parts

    def unparsed_parts(self, source_ids: Sequence[str]) -> list[tuple[str, Part]]:
        """Labelled GETs of the mapping rows naming these source rows in one of ``unparsed_forms``.

        Sent for the reconcile's stale candidates only (usually none), so a link is never cleared while
        a mapping row the bare-GUID lookup could not find still names its row.
        """
        per_part = max(1, self.read_chunk // 3)  # three forms a key: a part's In keeps its usual size
        parts = []
        for start in range(0, len(source_ids), per_part):
            forms = [f for g in source_ids[start : start + per_part] for f in unparsed_forms(g)]
            named = odata.in_strings(MAPPING_VALUE, forms)
            options = {
                "$select": _DECIDING_COLUMNS,
                "$filter": f"{sources_filter(self.target.sources)} and {named}",
            }
            parts.append(("unparsed", Part("GET", query_url(MAPPING_SET, options))))
        return parts

    def profile_parts(self, profile_ids: Sequence[str]) -> list[tuple[str, Part]]:
        """Labelled GETs of which of these profiles exist, and their partition ids."""
        chunk = self.read_chunk
        return [
            (
                "profile",
                Part(
                    "GET",
                    query_url(
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
