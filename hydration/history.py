"""``python -m hydration history``: the last runs, one line each, with every table's outcome.

Where ``status`` shows a few runs in detail, the history shows many at a glance: a column per table
holding its status and rows written (or to write, for a dry run) in that run, blank when the run did
not cover the table. Statuses show as stored, so one added later reads as itself.
"""

from __future__ import annotations

from typing import Any


def outcomes(runs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """The tables seen in ``runs`` (sorted) and, per run, each table's outcome in words."""
    tables = sorted({str(t["table"]) for run in runs for t in run["tables"]})
    rows = []
    for run in runs:
        cells = {}
        for table in run["tables"]:
            written = int(table["counts"]["written"])
            cells[str(table["table"])] = f"{table['status']} {written:,}" if written else str(table["status"])
        rows.append(cells)
    return tables, rows


def render_history(data: dict[str, Any]) -> str:
    """The history as a text table, newest run first."""
    runs = data["runs"]
    if not runs:
        return "no runs yet"
    tables, cells = outcomes(runs)
    head = ["run", "status", "trigger", "kind", "written", *tables]
    lines = [
        [
            str(run["runId"]),
            str(run["status"]),
            str(run["trigger"]),
            "plan" if run["plan"] else "run",
            f"{int(run['counts']['written']):,}",
            *(row.get(t, "") for t in tables),
        ]
        for run, row in zip(runs, cells, strict=True)
    ]
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [head, *lines]
    )
