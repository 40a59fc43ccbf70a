"""``python -m hydration status --watch``: the status again every few seconds until no run is running.

On a terminal the status is redrawn in place (a ``rich`` live display); elsewhere (a log, a pipe) each
round is printed in full after a line with its time, so the output reads as a history. The wait goes
through the services' clock, so tests run it on a clock of their own.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .service import Services
from .status import report
from .status_page import active
from .status_text import render


def _snapshot(svc: Services, *, limit: int, run_id: str | None) -> tuple[str, str, bool]:
    """The status now: its time, its text, and whether a run is running."""
    data = report(svc.state, now=svc.clock.now(), limit=limit, run_id=run_id)
    return str(data["generated"]), render(data), active(data)


def watch(
    svc: Services, out: TextIO, *, interval: float, limit: int, run_id: str | None, tty: bool | None = None
) -> int:
    """Show the status until no run shown is running; returns 0 (also when stopped with Ctrl-C)."""
    terminal = out.isatty() if tty is None else tty
    try:
        if terminal:
            _watch_live(svc, Console(file=out, force_terminal=True), interval, limit, run_id)
        else:
            _watch_plain(svc, out, interval, limit, run_id)
    except KeyboardInterrupt:
        out.write("\n")
    return 0


def _watch_plain(svc: Services, out: TextIO, interval: float, limit: int, run_id: str | None) -> None:
    while True:
        generated, text, running = _snapshot(svc, limit=limit, run_id=run_id)
        out.write(f"-- {generated}{'' if running else ' (no run is running)'}\n{text}\n")
        out.flush()
        if not running:
            return
        svc.clock.sleep(interval)


def _watch_live(svc: Services, console: Console, interval: float, limit: int, run_id: str | None) -> None:
    generated, text, running = _snapshot(svc, limit=limit, run_id=run_id)
    with Live(Text(text), console=console, auto_refresh=False) as live:
        while running:
            svc.clock.sleep(interval)
            generated, text, running = _snapshot(svc, limit=limit, run_id=run_id)
            live.update(Text(f"{text}\n(updated {generated})"), refresh=True)
        live.update(Text(f"{text}\n(no run is running; updated {generated})"), refresh=True)
