"""What a write fires: SDK messages, plug-in steps and cloud flows, seeded and registered on request.

Dataverse keeps its event registrations in tables a client can query: ``sdkmessages`` (the messages),
``sdkmessageprocessingsteps`` (a plug-in's step: message, table, stage, mode, filtering attributes,
enabled or not) and ``workflows`` (processes; a cloud flow is category 5, its definition the JSON in
``clientdata``). The seed holds the messages and, per source table, one Microsoft step (customization
level 0) on Update, as every organization has; ``register_step`` and ``register_flow`` add custom ones,
as an administrator who installs a plug-in or builds a flow would.

A flow's ``clientdata`` is shaped like the definitions Power Automate stores: a Logic Apps workflow
definition whose trigger is the Dataverse connector's ``SubscribeWebhookTrigger`` with the
``subscriptionRequest/*`` parameters (message, entity name, scope, filtering attributes).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from itertools import count
from typing import Any

from .organization import Organization
from .schema import metadata_id

MESSAGES = ("Create", "Update", "Delete", "Retrieve", "RetrieveMultiple", "CreateMultiple", "UpdateMultiple")
SOURCE_TABLES = ("contact", "lead")
STAGES = (10, 20, 40)
"""Pre-validation, pre-operation and post-operation: the stages a custom step may be registered in."""
CHANGE_TYPES = range(1, 8)
"""The trigger's ``subscriptionRequest/message``: 1 added, 2 deleted, 3 modified, 4 added or modified,
5 added or deleted, 6 modified or deleted, 7 any."""
STEP_COLUMNS = (
    "sdkmessageprocessingstepid",
    "name",
    "stage",
    "mode",
    "rank",
    "filteringattributes",
    "statecode",
    "customizationlevel",
    "sdkmessagename",
    "primaryobjecttypecode",
)
FLOW_COLUMNS = ("workflowid", "name", "category", "type", "statecode", "primaryentity", "clientdata")
MODERN_FLOW = 5
CONNECTOR = "/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps"


class EventError(ValueError):
    """A registration the emulator refuses (answered 400 by the control API)."""


def seed_events(org: Organization) -> None:
    """The messages, and one enabled Microsoft (system) step on Update per source table."""
    messages = [{"sdkmessageid": metadata_id("sdkmessage", m), "name": m} for m in MESSAGES]
    steps = [
        _step_row(
            f"Microsoft.Crm.ObjectModel.{table.title()}Service: Update of {table}",
            table,
            "Update",
            stage=40,
            mode=0,
            filtering="",
            enabled=True,
            custom=False,
        )
        for table in SOURCE_TABLES
    ]
    with org.store.lock:  # versions of their own: the seeded unification data stays as it was
        store = org.store
        store.insert_many(org.entity("sdkmessage"), messages, ("sdkmessageid", "name"), versions=count(1))
        store.insert_many(org.entity("sdkmessageprocessingstep"), steps, STEP_COLUMNS, versions=count(1))


def register_step(org: Organization, body: Mapping[str, Any]) -> str:
    """Add a custom plug-in step; return its id. ``body``: name, table, message, stage, mode, ..."""
    table = _table(body.get("table", "contact"))
    message = body.get("message", "Update")
    if message not in MESSAGES:
        raise EventError(f"'message' must be one of {', '.join(MESSAGES)}")
    stage, mode = body.get("stage", 40), body.get("mode", 0)
    if stage not in STAGES:
        raise EventError("'stage' must be 10 (pre-validation), 20 (pre-operation) or 40 (post-operation)")
    if mode not in (0, 1) or (mode == 1 and stage != 40):
        raise EventError("'mode' must be 0 (synchronous) or 1 (asynchronous, post-operation only)")
    row = _step_row(
        _text(body, "name", "Contoso.Plugins: Update of " + table),
        table,
        message,
        stage=stage,
        mode=mode,
        filtering=_text(body, "filteringattributes", ""),
        enabled=_flag(body, "enabled", True),
        custom=True,
    )
    _insert(org, "sdkmessageprocessingstep", row, STEP_COLUMNS)
    return str(row["sdkmessageprocessingstepid"])


def register_flow(org: Organization, body: Mapping[str, Any]) -> str:
    """Add a cloud flow with a Dataverse trigger (or the ``clientdata`` given as is); return its id."""
    table = _table(body.get("table", "contact"))
    change = body.get("message", 3)
    if isinstance(change, bool) or change not in CHANGE_TYPES:
        raise EventError("'message' must be the trigger's change type, 1 to 7 (3: modified)")
    clientdata = body.get("clientdata")
    if clientdata is not None and not isinstance(clientdata, str):
        raise EventError("'clientdata' must be a string (the flow definition as Dataverse stores it)")
    filtering = body.get("filteringattributes")
    if filtering is not None and not isinstance(filtering, str):
        raise EventError("'filteringattributes' must be a string of comma-separated column names")
    row = {
        "workflowid": str(uuid.uuid4()),
        "name": _text(body, "name", f"When a {table} is modified"),
        "category": MODERN_FLOW,
        "type": 1,
        "statecode": 1 if _flag(body, "activated", True) else 0,
        "primaryentity": "none",
        "clientdata": clientdata if clientdata is not None else flow_clientdata(table, change, filtering),
    }
    _insert(org, "workflow", row, FLOW_COLUMNS)
    return str(row["workflowid"])


def flow_clientdata(table: str, change: int, filtering: str | None) -> str:
    """A flow definition as Power Automate stores it: a Dataverse row trigger and one action."""
    parameters: dict[str, Any] = {
        "subscriptionRequest/message": change,
        "subscriptionRequest/entityname": table,
        "subscriptionRequest/scope": 4,
    }
    if filtering is not None:
        parameters["subscriptionRequest/filteringattributes"] = filtering
    trigger = {
        "type": "OpenApiConnectionWebhook",
        "inputs": {
            "host": {
                "apiId": CONNECTOR,
                "connectionName": "shared_commondataserviceforapps",
                "operationId": "SubscribeWebhookTrigger",
            },
            "parameters": parameters,
            "authentication": "@parameters('$authentication')",
        },
    }
    definition = {
        "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/"
        "workflowdefinition.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"$connections": {"defaultValue": {}, "type": "Object"}},
        "triggers": {"When_a_row_is_added,_modified_or_deleted": trigger},
        "actions": {"Compose": {"type": "Compose", "inputs": "@triggerOutputs()?['body']", "runAfter": {}}},
    }
    connections = {"shared_commondataserviceforapps": {"api": {"name": "shared_commondataserviceforapps"}}}
    return json.dumps(
        {
            "properties": {"connectionReferences": connections, "definition": definition},
            "schemaVersion": "1.0.0.0",
        }
    )


def _step_row(
    name: str, table: str, message: str, *, stage: int, mode: int, filtering: str, enabled: bool, custom: bool
) -> dict[str, Any]:
    return {
        "sdkmessageprocessingstepid": str(uuid.uuid4()) if custom else metadata_id("step", table, message),
        "name": name,
        "stage": stage,
        "mode": mode,
        "rank": 1,
        "filteringattributes": filtering or None,
        "statecode": 0 if enabled else 1,
        "customizationlevel": 1 if custom else 0,
        "sdkmessagename": message,
        "primaryobjecttypecode": table,
    }


def _insert(org: Organization, table: str, row: Mapping[str, Any], columns: tuple[str, ...]) -> None:
    now = org.clock.now()
    with org.store.lock:
        org.store.insert_many(
            org.entity(table),
            [{**row, "createdon": now, "modifiedon": now}],
            (*columns, "createdon", "modifiedon"),
        )


def _table(value: object) -> str:
    if value not in SOURCE_TABLES:
        raise EventError(f"'table' must be one of {', '.join(SOURCE_TABLES)}")
    return str(value)


def _text(body: Mapping[str, Any], name: str, default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise EventError(f"{name!r} must be a string")
    return value


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise EventError(f"{name!r} must be true or false")
    return value
