"""The status as text for the command line: ``python -m hydration status`` and the end of ``run``.

It renders the view of ``status`` (the JSON of ``GET /api/status``) and shows every status as it is
stored, so a status added later reads as itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .checkpoints import CountBounds, Counters
from .progress import eta_text, pace_text
from .statuses import Status


def amounts(view: dict[str, Any]) -> Callable[[str], str]:
    """A task view's counts in words, "at least" or "at most" where they are bounds (a step was redone)."""
    counters = Counters.from_dict(view["counts"])
    bounds = CountBounds(lower=tuple(view.get("lowerBounds", ())), upper=tuple(view.get("upperBounds", ())))
    return lambda name: counters.amount(name, bounds)


def writes_planned(table: dict[str, Any]) -> bool:
    """Whether a table view's ``written`` is what it would write (a dry run, or a pass the guard held)."""
    return bool(table["kind"] == "plan" or table["status"] == Status.HELD)


def table_line(table: dict[str, Any]) -> str:
    """One table of a run: status, counts, throttling, and pace and ETA where there are any."""
    amount = amounts(table)
    verb = "to write" if writes_planned(table) else "written"
    line = (
        f"  {table['table']:24} {table['status']:10} {verb} {amount('written'):>9}  "
        f"correct {amount('already_correct'):>9}  cleared {amount('cleared'):>7}  "
        f"throttled {table['throttledSeconds']:>6.0f} s"
    )
    extras = [pace_text(table["progress"])]
    eta = eta_text(table["progress"])
    extras.append(f"ETA {eta}" if eta else "")
    shown = ", ".join(text for text in extras if text)
    return f"{line}  {shown}" if shown else line


def render(data: dict[str, Any]) -> str:
    """The report as a text table."""
    lines: list[str] = []
    for run in data["runs"]:
        lines.append(
            f"run {run['runId']}  {run['status']:10}  trigger {run['trigger']}  started {run['started']}"
            + (f"  ended {run['ended']}" if run["ended"] else "")
        )
        if run["details"]:
            lines.append(f"  {run['details']}")
        for table in run["tables"]:
            lines.append(table_line(table))
            if table["details"]:
                lines.append(f"    {table['details']}")
            lines.extend(held_lines(table))
    if not lines:
        lines.append("no runs yet")
    return "\n".join(lines)


def held_lines(table: dict[str, Any]) -> list[str]:
    """A held table's sample of changes (row: old -> new profile), so an operator can judge it."""
    guard = table.get("guard") or {}
    if table["status"] != Status.HELD or not guard:
        return []
    lines = [
        f"    sample of the changes ({len(guard['sample'])} of {guard['relinked'] + guard['cleared']:,}):"
    ]
    for change in guard["sample"]:
        lines.append(f"      {change['row']}: {change['from']} -> {change['to'] or 'cleared'}")
    return lines
