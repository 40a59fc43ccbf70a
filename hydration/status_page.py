"""The live status page, ``GET /api/status?format=html``: the latest runs, their tables, a chart.

The page renders the view of ``status`` (the JSON of ``GET /api/status``). It is one self-contained
document: no script at all, one inline style allowed by its hash in the Content-Security-Policy, the
chart as inline SVG (``status_chart``). While a run is running the page reloads itself with a
``<meta http-equiv="refresh">``, which needs no script, so the strict policy holds. Every value is
escaped, in text and in attributes: table names, details and statuses can echo input, and a status
this page does not know (one added later) shows as itself.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from .progress import eta_text, pace_text
from .status_chart import chart
from .status_text import amounts, held_lines, writes_planned
from .statuses import Status

REFRESH_SECONDS = 5
"""How often the page reloads while a run is running."""
_KNOWN = {str(s) for s in Status}
_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#201f1e}"
    "table{border-collapse:collapse;margin:.5em 0 2em}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#605e5c}"
    ".st-Successful{color:#107c10}.st-Failed{color:#a4262c}.st-Skipped{color:#605e5c}"
    ".st-Running{color:#0078d4}.st-Held{color:#8a5a00;font-weight:bold}.st-other{color:#8764b8}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

HTML_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Headers of every HTML answer: no script, no other source, only the page's own style (by its hash)."""

_COLUMNS = (
    "table",
    "status",
    "phase",
    "pages",
    "rows read",
    "written",
    "already correct",
    "cleared",
    "rows/s",
    "ETA",
    "throttled (s)",
    "failed rows",
    "details",
)


def _status(status: Any) -> str:
    """A status as a span whose class is fixed for known statuses (never built from the value)."""
    text = str(status)
    css = f"st-{text}" if text in _KNOWN else "st-other"
    return f'<span class="status {css}">{escape(text)}</span>'


def _cell(value: str, *, name: str, numeric: bool = False) -> str:
    css = ' class="n"' if numeric else ""
    return f'<td{css} data-col="{name}">{value}</td>'


def _table_row(table: dict[str, Any]) -> str:
    counts, progress = table["counts"], table["progress"]
    amount = amounts(table)
    written = escape(amount("written")) + (" to write" if writes_planned(table) else "")
    cells = [
        _cell(escape(str(table["table"])), name="table"),
        _cell(_status(table["status"]), name="status"),
        _cell(escape(str(table.get("phase") or "")), name="phase"),
        _cell(f"{counts['pages']:,}", name="pages", numeric=True),
        _cell(f"{counts['rows_read']:,}", name="rows-read", numeric=True),
        _cell(written, name="written", numeric=True),
        _cell(escape(amount("already_correct")), name="already-correct", numeric=True),
        _cell(escape(amount("cleared")), name="cleared", numeric=True),
        _cell(escape(pace_text(progress).removesuffix(" rows/s")), name="rows-per-second", numeric=True),
        _cell(escape(eta_text(progress)), name="eta", numeric=True),
        _cell(f"{table['throttledSeconds']:.0f}", name="throttled", numeric=True),
        _cell(f"{counts['failed']:,}", name="failed", numeric=True),
        _cell(escape(str(table["details"])) + _held_sample(table), name="details"),
    ]
    return f'<tr class="task" data-table="{escape(str(table["table"]))}">{"".join(cells)}</tr>'


def _held_sample(table: dict[str, Any]) -> str:
    """A held table's sample of changes as a list (ids only, escaped all the same)."""
    items = "".join(f"<li>{escape(line.strip())}</li>" for line in held_lines(table)[1:])
    return f'<ul class="sample">{items}</ul>' if items else ""


def _run_section(run: dict[str, Any]) -> str:
    ended = f", ended {escape(str(run['ended']))}" if run["ended"] else ""
    header = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS)
    rows = "".join(_table_row(t) for t in run["tables"])
    table = (
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="note">No tables were queued in this run.</p>'
    )
    return (
        f'<section class="run" data-run="{escape(str(run["runId"]))}">'
        f"<h2>Run {escape(str(run['runId']))} {_status(run['status'])}</h2>"
        f"<p>trigger {escape(str(run['trigger']))}, started {escape(str(run['started']))}{ended}. "
        f"{escape(str(run['details']))}</p>"
        f"{table}</section>"
    )


def active(data: dict[str, Any]) -> bool:
    """Whether any run shown is running (the page then reloads itself)."""
    return any(run["status"] == Status.RUNNING for run in data["runs"])


def render_page(data: dict[str, Any], *, detailed: int) -> str:
    """The page: the first ``detailed`` runs in full, the chart over all of ``data``'s runs."""
    title = escape(str(data["task"]))
    live = active(data)
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if live else ""
    state = (
        f"A run is active: this page refreshes every {REFRESH_SECONDS} s." if live else "No run is active."
    )
    runs = "".join(_run_section(r) for r in data["runs"][:detailed]) or "<p>No runs yet.</p>"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"{refresh}<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>{escape(str(data['group']))}</p>"
        f'<p class="note" id="page-state" data-active="{str(live).lower()}">{escape(state)} '
        f"Updated {escape(str(data['generated']))}.</p>"
        f"<h2>Rows written per run</h2>{chart(data['runs'])}{runs}</body></html>\n"
    )
