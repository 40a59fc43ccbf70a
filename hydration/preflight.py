"""The preflight: what a first pass over each table would set off, and whether it can run at all.

Before the first pass an administrator wants to know what it fires and whether it will work: the
Update plug-in steps and cloud flows that run on every row it changes, whether the table takes
``UpdateMultiple``, whether the lookup column exists, whether every configured identity holds the
privileges it needs, and how long the pass takes. Every fact is read from the organization with
documented requests (sources in docs/engine.md, "Preflight"); the rules that judge them are pure
(``preflight_rules``), and ``preflight_report`` turns the findings into problems, suggestions and text.

The preflight only reads. A read that fails for a reason other than the table's absence (a privilege
to read steps or flows, say) is noted in the findings instead of ending the preflight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import DataverseError, FatalError, NotFoundError
from .dataverse.metadata import PROFILE_TABLE, LookupSpec, Metadata, TableInfo
from .first_pass_estimate import BENCHMARK_ROWS_PER_SECOND_PER_USER, first_pass_seconds
from .mapping import query_url
from .preflight_rules import (
    FlowTrigger,
    PluginStep,
    PrivilegeNeed,
    UnreadableFlow,
    depth_name,
    flow_fires,
    flow_triggers,
    missing_privileges,
    step_fires,
    step_from_row,
)
from .settings import Settings

T = TypeVar("T")
MAPPING_TABLE = "msdynci_alternatekey"
CUSTOMIZATION = ("prvCreateAttribute", "prvCreateRelationship", "prvWriteEntity")
"""What creating the lookup needs: a column and a relationship on the table (System Customizer holds them)."""


@dataclass(frozen=True)
class TableFindings:
    """What the preflight found about one table."""

    table: str
    lookup: str
    exists: bool = True
    lookup_state: str = "present"
    """``present``, ``missing`` or ``unusable`` (a column of that name that is not the lookup)."""
    detail: str = ""
    update_multiple: bool | None = None
    steps: tuple[PluginStep, ...] = ()
    """The enabled custom steps a lookup write runs."""
    other_steps: int = 0
    """Enabled Microsoft steps (not bypassable) that also run."""
    flows: tuple[FlowTrigger, ...] = ()
    unreadable_flows: tuple[UnreadableFlow, ...] = ()
    rows: int | None = None
    rows_exact: bool = True
    notes: tuple[str, ...] = ()
    """Reads that failed (the finding they were for is unknown)."""


@dataclass(frozen=True)
class IdentityFindings:
    """Whether one application user holds what it needs."""

    label: str
    missing: tuple[PrivilegeNeed, ...] = ()
    shallow: tuple[tuple[PrivilegeNeed, str], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Preflight:
    """Everything the preflight found, for every table and identity."""

    tables: tuple[TableFindings, ...]
    identities: tuple[IdentityFindings, ...]
    users: int
    rows_per_second_per_user: float = BENCHMARK_ROWS_PER_SECOND_PER_USER
    bypass_business_logic: str | None = None
    suppress_flows: bool = False
    allow_create_lookup: bool = False
    flow_notes: tuple[str, ...] = ()

    def estimate(self, table: TableFindings) -> float | None:
        """Seconds a first pass over ``table`` takes at the measured rate, if its rows are known."""
        if table.rows is None:
            return None
        return first_pass_seconds(table.rows, self.users, self.rows_per_second_per_user)


def _rows(client: DataverseClient, path: str, kind: str, page_size: int = 500) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for rows, _ in client.pages(path, params={}, page_size=page_size, kind=kind):
        found.extend(r for r in rows if isinstance(r, dict))
    return found


def read_steps(client: DataverseClient, table: str, message: str) -> list[PluginStep]:
    """The steps registered for ``message`` on ``table`` (enabled or not, Microsoft's or custom)."""
    condition = (
        f"sdkmessageid/name eq {odata.string(message)} and "
        f"sdkmessagefilterid/primaryobjecttypecode eq {odata.string(odata.logical_name(table))}"
    )
    select = "name,stage,mode,filteringattributes,statecode,customizationlevel"
    path = query_url("sdkmessageprocessingsteps", {"$select": select, "$filter": condition})
    steps = (step_from_row(row, message) for row in _rows(client, path, "preflight"))
    return [s for s in steps if s is not None]


def read_flows(client: DataverseClient) -> list[list[FlowTrigger] | UnreadableFlow]:
    """The Dataverse row triggers of every activated cloud flow (category 5, statecode 1)."""
    path = query_url(
        "workflows", {"$select": "workflowid,name,clientdata", "$filter": "category eq 5 and statecode eq 1"}
    )
    return [
        flow_triggers(str(row.get("name") or row.get("workflowid")), row.get("clientdata"))
        for row in _rows(client, path, "preflight", page_size=50)
    ]


def read_row_count(client: DataverseClient, table: TableInfo) -> tuple[int, bool]:
    """The table's rows: ``RetrieveTotalRecordCount`` (a snapshot), else ``$count`` (at most 5,000)."""
    names = quote(f"[{odata.string(table.logical_name)}]", safe="'[],")
    try:
        payload = client.get_json(f"RetrieveTotalRecordCount(EntityNames={names})", kind="preflight")
        values = payload["EntityRecordCountCollection"]["Values"]
        if isinstance(values, list) and values and isinstance(values[0], int):
            return int(values[0]), True
    except (DataverseError, KeyError, TypeError):
        pass
    counted = client.count(table.entity_set, kind="preflight")
    return counted.rows, not counted.at_least


def read_held_privileges(client: DataverseClient) -> dict[str, str]:
    """The caller's privileges by name, with their depth (``RetrieveUserPrivileges`` on WhoAmI's user)."""
    user_id = client.whoami().get("UserId")
    if not isinstance(user_id, str) or odata.try_guid(user_id) is None:
        raise FatalError("the answer to WhoAmI has no UserId")
    payload = client.get_json(
        f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()", kind="preflight"
    )
    held: dict[str, str] = {}
    for item in payload.get("RolePrivileges", []) if isinstance(payload, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("PrivilegeName"), str):
            held[item["PrivilegeName"]] = depth_name(item.get("Depth"))
    return held


def read_privilege_names(client: DataverseClient, table: str) -> dict[str, str]:
    """A table's privilege names by type (``Read`` → ``prvReadContact``), from its metadata."""
    path = query_url(
        f"EntityDefinitions(LogicalName={odata.string(table)})", {"$select": "SchemaName,Privileges"}
    )
    record = client.get_json(path, kind="metadata")
    names = {
        p["PrivilegeType"]: p["Name"]
        for p in record.get("Privileges") or []
        if isinstance(p, dict) and isinstance(p.get("PrivilegeType"), str) and isinstance(p.get("Name"), str)
    }
    schema = str(record.get("SchemaName") or table)
    for kind in ("Read", "Write", "Append", "AppendTo"):
        names.setdefault(kind, f"prv{kind}{schema}")
    return names


def _noted(notes: list[str], what: str, read: Callable[[], T]) -> T | None:
    """Run one read; a refusal or failure becomes a note ("could not read ...") and ``None``."""
    try:
        return read()
    except DataverseError as exc:
        notes.append(f"could not read {what}: {exc.message}")
        return None


def read_table(
    client: DataverseClient,
    metadata: Metadata,
    table: str,
    spec: LookupSpec,
    flows: Sequence[list[FlowTrigger] | UnreadableFlow],
) -> TableFindings:
    """The findings for one table (``flows``: every activated flow's triggers, read once)."""
    try:
        info = metadata.table(table)
    except NotFoundError as exc:
        return TableFindings(table=table, lookup=spec.attribute, exists=False, detail=exc.message)
    state, detail = "present", ""
    try:
        if metadata.find_lookup(table, spec) is None:
            state = "missing"
    except FatalError as exc:
        state, detail = "unusable", exc.message
    notes: list[str] = []
    bulk = _noted(notes, "UpdateMultiple support", lambda: metadata.supports_update_multiple(table))
    steps: list[PluginStep] = []
    for message in ("Update", "UpdateMultiple") if bulk else ("Update",):
        steps += _noted(notes, f"{message} plug-in steps", partial(read_steps, client, table, message)) or []
    firing = [s for s in steps if step_fires(s, spec.attribute)]
    counted = _noted(notes, "the row count", partial(read_row_count, client, info))
    return TableFindings(
        table=table,
        lookup=spec.attribute,
        lookup_state=state,
        detail=detail,
        update_multiple=bulk,
        steps=tuple(s for s in firing if s.custom),
        other_steps=sum(1 for s in firing if not s.custom),
        flows=tuple(
            t for f in flows if isinstance(f, list) for t in f if flow_fires(t, table, spec.attribute)
        ),
        unreadable_flows=tuple(f for f in flows if isinstance(f, UnreadableFlow)),
        rows=counted[0] if counted else None,
        rows_exact=counted[1] if counted else True,
        notes=tuple(notes),
    )


def needs(
    client: DataverseClient, tables: Sequence[TableFindings], settings: Settings, *, main: bool
) -> list[PrivilegeNeed]:
    """What one identity needs: the main one reads the mapping and the tables; every one writes links."""
    needed: list[PrivilegeNeed] = []
    if main:
        for table in (MAPPING_TABLE, PROFILE_TABLE):
            needed.append(PrivilegeNeed(read_privilege_names(client, table)["Read"], f"read {table}"))
    needed.append(PrivilegeNeed(read_privilege_names(client, PROFILE_TABLE)["AppendTo"], "bind the lookup"))
    for found in tables:
        if not found.exists:
            continue
        names = read_privilege_names(client, found.table)
        kinds = ("Read", "Write", "Append") if main else ("Write", "Append")
        needed += [PrivilegeNeed(names[k], f"{k.lower()} {found.table}") for k in kinds]
    if settings.client.bypass_business_logic:
        needed.append(PrivilegeNeed("prvBypassCustomBusinessLogic", "HYDRATION_BYPASS_BUSINESS_LOGIC"))
    if main and settings.allow_create_lookup and any(t.lookup_state == "missing" for t in tables):
        needed += [
            PrivilegeNeed(n, "create the lookup (HYDRATION_ALLOW_CREATE_LOOKUP)") for n in CUSTOMIZATION
        ]
    return needed


def read_identity(
    client: DataverseClient, label: str, tables: Sequence[TableFindings], settings: Settings, *, main: bool
) -> IdentityFindings:
    """Whether one identity holds every privilege it needs (``error``: it could not be told)."""
    try:
        held = read_held_privileges(client)
        absent, shallow = missing_privileges(held, needs(client, tables, settings, main=main))
    except DataverseError as exc:
        return IdentityFindings(label, error=f"could not read its privileges: {exc.message}")
    return IdentityFindings(label, missing=tuple(absent), shallow=tuple(shallow))


def run_preflight(
    client: DataverseClient,
    write_clients: Sequence[DataverseClient],
    metadata: Metadata,
    settings: Settings,
    tables: Sequence[str],
) -> Preflight:
    """Read everything the preflight reports, for ``tables``, with every configured identity."""
    flow_notes: list[str] = []
    flows = _noted(flow_notes, "cloud flows", partial(read_flows, client)) or []
    found = tuple(read_table(client, metadata, t, settings.lookup, flows) for t in tables)
    identities = [read_identity(client, "main identity", found, settings, main=True)]
    identities += [
        read_identity(c, f"write identity {i}", found, settings, main=False)
        for i, c in enumerate(write_clients, start=2)
    ]
    return Preflight(
        tables=found,
        identities=tuple(identities),
        users=1 + len(write_clients),
        bypass_business_logic=settings.client.bypass_business_logic,
        suppress_flows=settings.client.suppress_flows,
        allow_create_lookup=settings.allow_create_lookup,
        flow_notes=tuple(flow_notes),
    )
