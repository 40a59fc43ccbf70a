"""The tables that say what a write fires: SDK messages, plug-in steps and processes (cloud flows).

Their rows are seeded and registered by ``events``; here is only their shape.
"""

from __future__ import annotations

from .schema import Attribute, AttributeType, Entity, TableType, add_common_columns, add_string_columns


def add_integer_columns(entity: Entity, *names: str) -> None:
    """Add whole-number columns (``Edm.Int32``)."""
    for name in names:
        entity.add(Attribute(name, name, AttributeType.INTEGER))


def event_entities() -> list[Entity]:
    """The tables that say what a write fires: SDK messages, plug-in steps and processes (cloud flows).

    A step's message name and table are stored on the step itself (as a filter stores its message's
    name), and queries reach them by the navigation paths Dataverse documents (``QUERY_PATHS``).
    """
    messages = Entity(
        "sdkmessage", "SdkMessage", "sdkmessages", "sdkmessageid", "name", TableType.STANDARD, 4606
    )
    add_common_columns(messages)
    add_string_columns(messages, "name")
    steps = Entity(
        "sdkmessageprocessingstep",
        "SdkMessageProcessingStep",
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstepid",
        "name",
        TableType.STANDARD,
        4608,
    )
    add_common_columns(steps)
    add_string_columns(steps, "name", "filteringattributes", "sdkmessagename", "primaryobjecttypecode")
    add_integer_columns(steps, "stage", "mode", "rank", "customizationlevel")
    workflows = Entity("workflow", "Workflow", "workflows", "workflowid", "name", TableType.STANDARD, 4703)
    add_common_columns(workflows)
    add_string_columns(workflows, "name", "primaryentity")
    add_integer_columns(workflows, "category", "type")
    workflows.add(Attribute("clientdata", "ClientData", AttributeType.MEMO))
    return [messages, steps, workflows]
