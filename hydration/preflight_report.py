"""The preflight's findings as an operator reads them: blocking problems, suggestions, and the text.

A problem *blocks* when a pass would fail or write nothing: the table does not exist, its lookup is
missing and the app may not (or cannot) create it, a column of the lookup's name is something else, or
an identity lacks a privilege it needs. Everything else is information with, where it applies, the
setting that changes it: ``HYDRATION_BYPASS_BUSINESS_LOGIC`` for custom plug-in steps,
``HYDRATION_SUPPRESS_FLOWS`` for cloud flows. Pure functions of the findings, tested on plain data.
"""

from __future__ import annotations

from .first_pass_estimate import BENCHMARK_SOURCE, duration_text
from .preflight import Preflight, TableFindings

BLOCKED_EXIT = 5
"""The exit code of ``preflight`` (and of a ``plan`` that otherwise succeeded) when something blocks."""


def problems(found: Preflight) -> list[str]:
    """Every blocking problem, one line each, saying what to do."""
    lines: list[str] = []
    for table in found.tables:
        if not table.exists or table.lookup_state == "unusable":
            lines.append(f"{table.table}: {table.detail}")
        elif table.lookup_state == "missing" and not found.allow_create_lookup:
            lines.append(
                f"{table.table}: the lookup {table.lookup} does not exist and the app may not create it: run "
                "`python -m hydration provision` as a Dataverse administrator (or set "
                "HYDRATION_ALLOW_CREATE_LOOKUP=true with customization privileges)"
            )
    for identity in found.identities:
        for need in identity.missing:
            lines.append(f"{identity.label}: missing privilege {need.name} (needed to {need.why})")
    return lines


def suggestions(found: Preflight) -> list[str]:
    """The settings that would spare the first pass's side effects, where they apply and are not set."""
    lines: list[str] = []
    steps = [s for t in found.tables for s in t.steps]
    wanted = [m for m, mode in (("CustomSync", 0), ("CustomAsync", 1)) if any(s.mode == mode for s in steps)]
    have = (found.bypass_business_logic or "").split(",")
    if any(m not in have for m in wanted):
        value = ",".join(sorted({*wanted, *(h for h in have if h)}, key=("CustomSync", "CustomAsync").index))
        lines.append(
            f"set HYDRATION_BYPASS_BUSINESS_LOGIC={value} to skip the custom plug-in steps above on the link "
            "writes (the identities need prvBypassCustomBusinessLogic)"
        )
    if any(t.flows for t in found.tables) and not found.suppress_flows:
        lines.append(
            "set HYDRATION_SUPPRESS_FLOWS=true so the link writes do not start the cloud flows above"
        )
    if found.users == 1 and any((t.rows or 0) >= 100_000 for t in found.tables):
        lines.append("add application users (DATAVERSE_EXTRA_CLIENT_IDS): each one adds its own limits")
    return lines


def _steps(table: TableFindings, bypass: str | None) -> list[str]:
    if not table.steps:
        lines = ["  plug-in steps on Update that the lookup write fires: none (custom)"]
    else:
        lines = ["  plug-in steps on Update that the lookup write fires:"]
        for step in table.steps:
            skipped = bypass and ("CustomSync" if step.mode == 0 else "CustomAsync") in bypass.split(",")
            on = "any column" if not step.filtering else "filtering " + ",".join(step.filtering)
            lines.append(
                f"    - {step.name} [{step.message}, {step.stage_name}, {step.mode_name}, {on}]"
                + (" (bypassed by HYDRATION_BYPASS_BUSINESS_LOGIC)" if skipped else "")
            )
    if table.other_steps:
        lines.append(
            f"    and {table.other_steps} Microsoft step(s), which are not custom logic and always run"
        )
    return lines


def _flows(table: TableFindings, suppressed: bool) -> list[str]:
    tail = " (suppressed by HYDRATION_SUPPRESS_FLOWS)" if suppressed else ""
    if not table.flows:
        lines = [
            "  cloud flows that would trigger: none" + (" among those read" if table.unreadable_flows else "")
        ]
    else:
        lines = ["  cloud flows that would trigger:"]
        for flow in table.flows:
            on = "any column" if not flow.filtering else "filtering " + ",".join(flow.filtering)
            lines.append(f"    - {flow.flow} [change type {flow.change_type}, {on}]{tail}")
    lines += [f"    - {f.flow}: could not read trigger ({f.reason})" for f in table.unreadable_flows]
    return lines


def _table_text(found: Preflight, table: TableFindings) -> list[str]:
    lines = [f"{table.table}:"]
    if not table.exists:
        return [*lines, f"  does not exist: {table.detail}"]
    lookup = {"present": "exists", "missing": "does not exist yet", "unusable": "unusable: " + table.detail}
    lines.append(f"  lookup {table.lookup}: {lookup[table.lookup_state]}")
    bulk = {True: "enabled", False: "not enabled (writes go by $batch, slower)", None: "unknown"}
    lines.append(f"  UpdateMultiple: {bulk[table.update_multiple]}")
    lines += _steps(table, found.bypass_business_logic)
    lines += _flows(table, found.suppress_flows)
    seconds = found.estimate(table)
    if seconds is not None and table.rows is not None:
        rows = f"{table.rows:,}" if table.rows_exact else f"at least {table.rows:,}"
        lines.append(
            f"  first pass: {rows} rows, {duration_text(seconds)} with {found.users} user(s) at "
            f"{found.rows_per_second_per_user:g} rows/s each (measured: {BENCHMARK_SOURCE}; plug-ins and "
            "flows make it slower)"
        )
    lines += [f"  {note}" for note in table.notes]
    return lines


def render(found: Preflight) -> str:
    """The whole preflight as text: per table, the identities, then problems and suggestions."""
    lines = ["preflight"]
    for table in found.tables:
        lines += _table_text(found, table)
    lines += [f"cloud flows: {note}" for note in found.flow_notes]
    for identity in found.identities:
        if identity.error:
            lines.append(f"{identity.label}: {identity.error}")
        elif not identity.missing:
            lines.append(f"{identity.label}: holds every privilege it needs")
        lines += [
            f"{identity.label}: {n.name} only at {d} depth ({n.why} needs Global)"
            for n, d in identity.shallow
        ]
    blocking = problems(found)
    lines += ["blocking problems:", *(f"  - {p}" for p in blocking)] if blocking else ["nothing blocks a run"]
    advice = suggestions(found)
    lines += ["suggestions:", *(f"  - {s}" for s in advice)] if advice else []
    return "\n".join(lines) + "\n"
