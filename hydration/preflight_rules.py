"""Which registered logic a lookup write fires, and which privileges a run needs: pure rules.

A write of the lookup column is an ``Update`` of the row. It runs every enabled plug-in step registered
for ``Update`` on the table whose filtering attributes are empty (any column) or name the lookup, and it
starts every activated cloud flow whose Dataverse trigger ("When a row is added, modified or deleted")
watches modifications of that table with no filtering attributes or with the lookup among them. These
rules are kept apart from the reads (``preflight``) so each can be tested on plain data.

A flow's definition (``clientdata``) is JSON written by Power Automate; one this code cannot read is
reported as such, never taken to mean "does not fire".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

STAGES = {10: "PreValidation", 20: "PreOperation", 40: "PostOperation"}
"""``sdkmessageprocessingstep.stage`` values a registered step can have, by name."""
MODES = {0: "sync", 1: "async"}
UPDATE_CHANGE_TYPES = frozenset({3, 4, 6, 7})
"""``subscriptionRequest/message`` values that include "modified": 3 modified, 4 added or modified,
6 modified or deleted, 7 added, modified or deleted."""
DEPTHS = {"Basic": 0, "Local": 1, "Deep": 2, "Global": 3}
"""``PrivilegeDepth``: how far a privilege reaches; the app needs organization-wide (``Global``)."""


@dataclass(frozen=True)
class PluginStep:
    """One ``sdkmessageprocessingstep`` as the preflight reports it."""

    name: str
    message: str
    stage: int
    mode: int
    filtering: tuple[str, ...]
    enabled: bool
    custom: bool
    """``customizationlevel`` 1: registered by someone other than Microsoft (bypassable)."""

    @property
    def stage_name(self) -> str:
        """``PreValidation``, ``PreOperation``, ``PostOperation`` (or the raw value)."""
        return STAGES.get(self.stage, f"stage {self.stage}")

    @property
    def mode_name(self) -> str:
        """``sync`` or ``async``."""
        return MODES.get(self.mode, f"mode {self.mode}")


@dataclass(frozen=True)
class FlowTrigger:
    """A cloud flow's Dataverse row trigger, as read from its ``clientdata``."""

    flow: str
    table: str
    change_type: int
    filtering: tuple[str, ...]


@dataclass(frozen=True)
class UnreadableFlow:
    """A cloud flow whose definition could not be read: it may or may not fire."""

    flow: str
    reason: str


def columns(text: object) -> tuple[str, ...]:
    """Comma-separated column names, lowercased and stripped (``None`` or ``""``: none)."""
    if not isinstance(text, str):
        return ()
    return tuple(c.strip().lower() for c in text.split(",") if c.strip())


def step_from_row(row: Mapping[str, Any], message: str) -> PluginStep | None:
    """A step from its Web API row; ``None`` when the row lacks a numeric stage or mode."""
    stage, mode = row.get("stage"), row.get("mode")
    if not isinstance(stage, int) or not isinstance(mode, int):
        return None
    return PluginStep(
        name=str(row.get("name") or row.get("sdkmessageprocessingstepid") or "(unnamed step)"),
        message=message,
        stage=stage,
        mode=mode,
        filtering=columns(row.get("filteringattributes")),
        enabled=row.get("statecode") == 0,
        custom=row.get("customizationlevel") != 0,
    )


def written_columns(lookup: str) -> tuple[str, ...]:
    """The columns a link write changes: the lookup and its partition id companion."""
    return (lookup.lower(), lookup.lower() + "pid")


def step_fires(step: PluginStep, lookup: str) -> bool:
    """Whether a write of ``lookup`` runs ``step``: enabled, and no filter or a filter naming it."""
    if not step.enabled:
        return False
    return not step.filtering or any(c in step.filtering for c in written_columns(lookup))


def flow_triggers(flow: str, clientdata: object) -> list[FlowTrigger] | UnreadableFlow:
    """The Dataverse row triggers in a flow's definition, or why it could not be read."""
    if not isinstance(clientdata, str) or not clientdata.strip():
        return UnreadableFlow(flow, "the flow has no definition (clientdata is empty)")
    try:
        data = json.loads(clientdata)
    except ValueError:
        return UnreadableFlow(flow, "its definition (clientdata) is not JSON")
    definition = _path(data, "properties", "definition")
    if not isinstance(definition, dict):
        definition = _path(data, "definition")
    triggers = definition.get("triggers") if isinstance(definition, dict) else None
    if not isinstance(triggers, dict):
        return UnreadableFlow(flow, "its definition has no triggers")
    found: list[FlowTrigger] = []
    for trigger in triggers.values():
        if not _is_dataverse_row_trigger(trigger):
            continue
        parsed = _trigger(flow, trigger["inputs"].get("parameters"))
        if isinstance(parsed, UnreadableFlow):
            return parsed
        found.append(parsed)
    return found


def _path(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _is_dataverse_row_trigger(trigger: object) -> bool:
    if not isinstance(trigger, dict) or trigger.get("type") != "OpenApiConnectionWebhook":
        return False
    host = _path(trigger, "inputs", "host")
    if not isinstance(host, dict) or host.get("operationId") != "SubscribeWebhookTrigger":
        return False
    names = f"{host.get('apiId', '')} {host.get('connectionName', '')}".lower()
    return "commondataserviceforapps" in names


def _trigger(flow: str, parameters: object) -> FlowTrigger | UnreadableFlow:
    if not isinstance(parameters, dict):
        return UnreadableFlow(flow, "its Dataverse trigger has no parameters")
    table = parameters.get("subscriptionRequest/entityname")
    change = parameters.get("subscriptionRequest/message")
    if isinstance(change, str) and change.strip().isdigit():
        change = int(change)
    if not isinstance(table, str) or isinstance(change, bool) or not isinstance(change, int):
        return UnreadableFlow(flow, "its Dataverse trigger names no table or change type")
    filtering = columns(parameters.get("subscriptionRequest/filteringattributes"))
    return FlowTrigger(flow, table.strip().lower(), change, filtering)


def flow_fires(trigger: FlowTrigger, table: str, lookup: str) -> bool:
    """Whether a write of ``lookup`` on ``table`` starts a flow with this trigger."""
    if trigger.table != table.lower() or trigger.change_type not in UPDATE_CHANGE_TYPES:
        return False
    return not trigger.filtering or any(c in trigger.filtering for c in written_columns(lookup))


@dataclass(frozen=True)
class PrivilegeNeed:
    """A privilege the app needs, and why (shown when it is missing)."""

    name: str
    why: str


def missing_privileges(
    held: Mapping[str, str], needed: Iterable[PrivilegeNeed]
) -> tuple[list[PrivilegeNeed], list[tuple[PrivilegeNeed, str]]]:
    """The needs not held at all, and those held below organization (``Global``) depth with it."""
    absent: list[PrivilegeNeed] = []
    shallow: list[tuple[PrivilegeNeed, str]] = []
    for need in needed:
        depth = held.get(need.name)
        if depth is None:
            absent.append(need)
        elif DEPTHS.get(depth, 3) < DEPTHS["Global"]:
            shallow.append((need, depth))
    return absent, shallow


def depth_name(value: object) -> str:
    """A ``Depth`` as the Web API answers it (the enum's name, or its number) as a name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return next((name for name, number in DEPTHS.items() if number == value), str(value))
    return str(value)
