"""The unification manifest, validated against its JSON schema, and the eligibility rules it settles.

It says what CI-D unified and how; the rules here need nothing but the manifest.

The manifest comes from configuration (``HYDRATION_MANIFEST``). An event or an HTTP request may choose
tables among those it names or ask for a full pass, but never brings names of its own, so nothing a
caller sends reaches a Dataverse URL unless an administrator configured it.

The rules and their messages mirror what users know from CI-D's own backstamping job; the rules that
need Dataverse (the real primary key, the sample check against the data) are in ``eligibility``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

from .statuses import Status

CONNECTORS = frozenset({"dataverse", "powerquerydataverse"})
"""Connectors whose rows are Dataverse rows of the configured organization (compared case-insensitively)."""
_LOGICAL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_ERRORS = 10

RUN_SKIPPED_LAKE = (
    "Linking of Dataverse tables to the CustomerProfile table is skipped. The Customer Insights - Data "
    "output is stored in a private data lake, so the customer profiles are not in Dataverse."
)
RUN_SKIPPED_NONE = (
    "The backstamping job is skipped. It only runs when unification setup contains tables that are "
    "ingested to Customer Insights from the same Dataverse organization that was configured or selected "
    "during instance creation."
)

RUN_SKIPPED_EMPTY = (
    'The backstamping job is skipped because the manifest lists no tables (its "tables" is empty): '
    "list the tables Customer Insights unified, for example from `python -m hydration discover "
    "--manifest`."
)


class ManifestError(ValueError):
    """The manifest is not valid JSON or does not follow the schema; the message lists every problem."""


@dataclass(frozen=True)
class Entry:
    """One (CI-D data source, CI-D table) pair of the manifest."""

    data_source: str
    entity: str
    table: str
    """The Dataverse table's logical name (the unit of work)."""
    connector: str
    source_organization: str
    primary_key: str
    unified: bool = True

    @property
    def source(self) -> tuple[str, str]:
        """The pair as the mapping table names it."""
        return (self.data_source, self.entity)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest."""

    organization_url: str
    output_mode: str
    environment_type: str
    entries: tuple[Entry, ...]

    @property
    def tables(self) -> list[str]:
        """The Dataverse tables the manifest names, in first-mention order."""
        return list(dict.fromkeys(e.table for e in self.entries))

    def entries_of(self, table: str) -> list[Entry]:
        """The entries that feed one Dataverse table."""
        return [e for e in self.entries if e.table == table]


def _dataverse_connector(connector: str) -> bool:
    return connector.replace(" ", "").lower() in CONNECTORS


def _key_name(entity: str) -> str:
    """A name to record a non-Dataverse entry's Skipped outcome under."""
    name = re.sub(r"[^a-z0-9_]", "_", entity.lower())[:60]
    return name if name[:1].isalpha() else "t_" + name


@cache
def schema() -> dict[str, Any]:
    """The manifest's JSON schema (``hydration/manifest.schema.json``)."""
    text = resources.files("hydration").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _where(path: Sequence[Any]) -> str:
    return "manifest" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def parse(text: str, *, source: str = "the manifest") -> Manifest:
    """Validate and read a manifest; ``ManifestError`` says what is wrong and where."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{source} is not valid JSON: {exc}") from exc
    validator = Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{_where(e.absolute_path)}: {e.message[:200]}" for e in errors[:_MAX_ERRORS]]
        more = f"\n  ... and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
        raise ManifestError(f"{source} does not follow the manifest schema:\n  " + "\n  ".join(lines) + more)
    organization = data["organizationUrl"].rstrip("/")
    entries: list[Entry] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(data["tables"]):
        table = item.get("dataverseTable") or item["entity"]
        if not _LOGICAL.fullmatch(table):
            if _dataverse_connector(item["connector"]):
                problems.append(
                    f"manifest.tables[{index}]: {item['entity']!r} is not a Dataverse logical name; "
                    "give dataverseTable"
                )
                continue
            table = _key_name(item["entity"])  # only ever recorded as Skipped, never queried
        pair = (item["dataSource"], item["entity"])
        if pair in seen:
            problems.append(f"manifest.tables[{index}]: the pair {pair} is listed twice")
        seen.add(pair)
        entries.append(
            Entry(
                data_source=item["dataSource"],
                entity=item["entity"],
                table=table,
                connector=item["connector"],
                source_organization=(item.get("sourceOrganizationUrl") or organization).rstrip("/"),
                primary_key=item["primaryKey"],
                unified=item.get("unified", True),
            )
        )
    if problems:
        raise ManifestError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return Manifest(
        organization_url=organization,
        output_mode=data["outputMode"],
        environment_type=data["environmentType"],
        entries=tuple(entries),
    )


def same_organization(a: str, b: str) -> bool:
    """Whether two organization URLs name the same organization (host names compare case-insensitively)."""
    left, right = urlsplit(a), urlsplit(b)
    return (left.hostname or "").lower() == (right.hostname or "").lower() and left.port == right.port


def run_problem(manifest: Manifest, organization_url: str) -> tuple[str, str] | None:
    """Whether the whole run cannot go ahead: ``(status, details)``, else None.

    A manifest for another organization is a configuration error (Failed); a private data lake means
    there is nothing in Dataverse to link to, and a manifest without tables names nothing (Skipped).
    """
    if not same_organization(manifest.organization_url, organization_url):
        return (
            Status.FAILED,
            f"the manifest describes the organization {manifest.organization_url}, but DATAVERSE_URL is "
            f"{organization_url}; fix one of them",
        )
    if manifest.output_mode == "privateDataLake":
        return (Status.SKIPPED, RUN_SKIPPED_LAKE)
    if not manifest.entries:
        return (Status.SKIPPED, RUN_SKIPPED_EMPTY)
    return None


def entry_problem(entry: Entry, manifest: Manifest) -> str | None:
    """Why an entry cannot be linked, judged from the manifest alone; None when it may be."""
    if manifest.environment_type == "accounts":
        return (
            f"{entry.data_source}/{entry.entity} is skipped because the environment is for business accounts "
            "(B2B); Dataverse tables are linked to customer profiles only in environments for individuals."
        )
    if not entry.unified:
        return f"{entry.data_source}/{entry.entity} is skipped because it is not part of unification."
    if not _dataverse_connector(entry.connector):
        return (
            f"{entry.data_source}/{entry.entity} is skipped because it was ingested through the "
            f"{entry.connector!r} connector; only tables ingested with the Dataverse or the Power Query "
            "Dataverse connector can be linked."
        )
    if not same_organization(entry.source_organization, manifest.organization_url):
        return (
            f"{entry.data_source}/{entry.entity} is skipped because it was ingested from another Dataverse "
            f"organization ({entry.source_organization}) than the one configured "
            f"({manifest.organization_url})."
        )
    return None


def primary_key_problem(entry: Entry, real_key: str) -> str | None:
    """The rule that needs metadata: the key used in unification must be the table's primary key."""
    if entry.primary_key.lower() != real_key.lower():
        return (
            f"{entry.data_source}/{entry.entity} is skipped because the primary key used in unification "
            f"({entry.primary_key}) is not the primary key of the Dataverse table {entry.table} ({real_key})."
        )
    return None
