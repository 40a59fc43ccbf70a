"""The status page's chart of rows written per run, as inline SVG drawn on the server.

No script and no external asset: the SVG is part of the page, coloured with presentation attributes
(not ``style`` attributes, which the page's Content-Security-Policy refuses), and every text in it is
escaped. Dry runs write nothing and are left out; each bar's tooltip (``<title>``) names its run.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .statuses import Status

WIDTH = 640
HEIGHT = 180
_TOP, _BOTTOM, _LEFT, _RIGHT = 16, 28, 64, 8
_FILL: dict[str, str] = {
    Status.SUCCESSFUL: "#107c10",
    Status.FAILED: "#a4262c",
    Status.RUNNING: "#0078d4",
    Status.SKIPPED: "#8a8886",
}
_OTHER_FILL = "#8764b8"
"""The colour of any other status (one added later reads as itself in the tooltip)."""


def written_per_run(runs: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """``(run id, status, rows written)`` of the runs that could write, oldest first."""
    return [
        (str(r["runId"]), str(r["status"]), int(r["counts"]["written"]))
        for r in reversed(runs)
        if not r["plan"]
    ]


def _bar(index: int, count: int, run: tuple[str, str, int], top: int) -> str:
    run_id, status, written = run
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    slot = plot_width / count
    height = plot_height * written / top if top else 0.0
    x = _LEFT + index * slot + slot * 0.15
    y = _TOP + plot_height - height
    fill = _FILL.get(status, _OTHER_FILL)
    tip = escape(f"{run_id}: {written:,} rows written ({status})")
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{max(height, 1.0):.1f}" '
        f'fill="{fill}" data-run="{escape(run_id)}" data-written="{written}"><title>{tip}</title></rect>'
    )


def chart(runs: list[dict[str, Any]]) -> str:
    """The SVG chart of ``runs`` (newest first, as the status lists them), or a sentence when empty."""
    bars = written_per_run(runs)
    if not bars:
        return '<p class="note">No run has written rows yet.</p>'
    top = max(written for _, _, written in bars)
    base = HEIGHT - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="history-chart" role="img" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" aria-labelledby="chart-title">',
        f'<title id="chart-title">Rows written per run, last {len(bars)} runs, oldest first</title>',
        f'<line x1="{_LEFT}" y1="{base}" x2="{WIDTH - _RIGHT}" y2="{base}" stroke="#605e5c"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" font-size="11">{top:,}</text>',
        f'<text x="{_LEFT - 6}" y="{base}" text-anchor="end" font-size="11">0</text>',
        *(_bar(i, len(bars), run, top) for i, run in enumerate(bars)),
        f'<text x="{_LEFT}" y="{HEIGHT - 8}" font-size="11">{escape(bars[0][0][:16])}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">'
        f"{escape(bars[-1][0][:16])}</text>",
        "</svg>",
    ]
    return "".join(parts)
