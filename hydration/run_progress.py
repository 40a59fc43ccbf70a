"""Progress of a run processed here: a live bar per table on a terminal, plain lines elsewhere.

``run`` and ``plan`` report the run's status view (``status``) after every step. On a terminal each
table gets a ``rich`` progress bar: rows read out of the rows the pass has to read when a count is on
record (``estimates``), else a bar that only pulses, with the counts, pace and ETA beside it. When the
output is a file or a pipe (a CI log, ``| tee``), the same news comes as one plain line per change, so
logs stay readable. Table names and statuses are printed as text, never as ``rich`` markup.
"""

from __future__ import annotations

from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .progress import eta_text, pace_text
from .status_text import amounts, writes_planned
from .statuses import FINAL, Status


class RunProgress(Protocol):
    """Shows a run's progress."""

    def update(self, view: dict[str, Any]) -> None:
        """The run's status view after a step."""
        ...

    def close(self) -> None:
        """The run is over (or the command stopped): leave the last state on screen."""
        ...


def _counts_text(table: dict[str, Any]) -> str:
    amount = amounts(table)
    verb = "to write" if writes_planned(table) else "written"
    return (
        f"{table['counts']['pages']} pages, {amount('rows_read')} rows read, {amount('written')} {verb}, "
        f"{amount('already_correct')} already correct, {amount('cleared')} cleared"
    )


class PlainProgress:
    """One line per table whenever its status or counts change.

    The tables Skipped at the start are not repeated: the command said so when the run started.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.seen: dict[str, tuple[Any, ...]] = {}

    def update(self, view: dict[str, Any]) -> None:
        """Write a line for each table that changed since the last view."""
        first = not self.seen
        for table in view["tables"]:
            if table["status"] == Status.SKIPPED and first:
                self.seen[table["table"]] = ()
            c = table["counts"]
            key = (table["status"], c["pages"], c["written"], c["cleared"])
            if self.seen.get(table["table"]) == key:
                continue
            self.seen[table["table"]] = key
            extras = [pace_text(table["progress"]), eta_text(table["progress"])]
            extras[1] = f"ETA {extras[1]}" if extras[1] else ""
            tail = "".join(f", {text}" for text in extras if text)
            self.out.write(
                f"  {table['table']}: {str(table['status']).lower()}, {_counts_text(table)}{tail}\n"
            )
        self.out.flush()

    def close(self) -> None:
        """Nothing to tidy: every line is written already."""


class BarProgress:
    """A live ``rich`` bar per table on a terminal."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[state]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}", markup=False),
            console=console,
            refresh_per_second=4,
        )
        self.ids: dict[str, TaskID] = {}
        self.started = False

    def update(self, view: dict[str, Any]) -> None:
        """Move each table's bar to its latest counts."""
        if not self.started:
            self.bars.start()
            self.started = True
        for table in view["tables"]:
            name = str(table["table"])
            if name not in self.ids:
                if table["status"] == Status.SKIPPED and not self.ids:
                    continue  # Skipped at the start: the command said so already
                self.ids[name] = self.bars.add_task(name, total=None, state="", counts="")
            self.bars.update(self.ids[name], **_bar_fields(table))
        self.bars.refresh()

    def close(self) -> None:
        """Stop the live display, leaving the last bars on screen."""
        if self.started:
            self.bars.stop()


def _bar_fields(table: dict[str, Any]) -> dict[str, Any]:
    """A table's bar: its total when known (rows read + rows left), else none, and its texts."""
    read = int(table["counts"]["rows_read"])
    progress = table["progress"]
    left = progress.get("mappingRowsLeft")
    final = table["status"] in FINAL
    if final:
        total: float | None = max(read, 1)
        read = max(read, 1)
    elif left is not None and not progress.get("atLeast"):
        total = read + int(left)
    else:
        total = None
    eta = eta_text(progress)
    state = ", ".join(
        t for t in (str(table["status"]), pace_text(progress), f"ETA {eta}" if eta else "") if t
    )
    return {"total": total, "completed": read, "state": state, "counts": _counts_text(table)}


def progress_for(out: TextIO, *, tty: bool | None = None) -> RunProgress:
    """Bars when ``out`` is a terminal (or ``tty`` says to draw them anyway), plain lines otherwise."""
    terminal = out.isatty() if tty is None else tty
    if not terminal:
        return PlainProgress(out)
    return BarProgress(Console(file=out, force_terminal=True))
