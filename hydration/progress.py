"""A task's pace and ETA, as pure functions of its record and the time: what the status shows live.

The pace is rows read per second since the task started (until it ended, or until now while it runs):
queue waits and throttling are part of it, as they are part of the time a pass takes. The ETA is the
mapping rows left (``estimates``) at that pace, and exists only while the pass is in its retry or
mapping phase with a count on record; a count that reached Dataverse's limit gives an ETA that is a
lower bound, and says so. Anything else has no ETA: none is better than a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .estimates import MappingLeft
from .state import TaskRecord
from .statuses import FINAL


@dataclass(frozen=True)
class Progress:
    """How fast a task reads and how long its mapping phase has left."""

    rows_per_second: float | None
    mapping_rows_left: int | None
    at_least: bool
    eta_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """The status answer's ``progress`` object."""
        return {
            "rowsPerSecond": None if self.rows_per_second is None else round(self.rows_per_second, 1),
            "mappingRowsLeft": self.mapping_rows_left,
            "atLeast": self.at_least,
            "etaSeconds": None if self.eta_seconds is None else round(self.eta_seconds),
        }


def rows_per_second(rows_read: int, started: datetime | None, until: datetime) -> float | None:
    """Rows read per second between ``started`` and ``until``; ``None`` before any time or row."""
    if started is None or rows_read <= 0:
        return None
    seconds = (until - started).total_seconds()
    return rows_read / seconds if seconds > 0 else None


def task_progress(task: TaskRecord, rows_read: int, *, now: datetime) -> Progress:
    """The pace of a task and, while it runs with a count on record, its ETA."""
    final = task.status in FINAL
    pace = rows_per_second(rows_read, task.started, task.ended if final and task.ended else now)
    left = None if final else MappingLeft.from_dict(task.estimate)
    if left is None:
        return Progress(pace, None, False, None)
    rows_left = max(0, left.rows - max(0, rows_read - left.rows_read))
    eta = None
    if rows_left == 0:
        eta = 0.0 if not left.at_least else None
    elif pace:
        eta = rows_left / pace
    return Progress(pace, rows_left, left.at_least, eta)


def duration_text(seconds: float) -> str:
    """A duration as people read it: ``45 s``, ``12 min``, ``3 h 05 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def eta_text(progress: dict[str, Any]) -> str:
    """A status answer's ETA in words (``at least`` for a lower bound), or ``""`` when there is none."""
    eta = progress.get("etaSeconds")
    if eta is None:
        return ""
    return ("at least " if progress.get("atLeast") else "") + duration_text(float(eta))


def pace_text(progress: dict[str, Any]) -> str:
    """A status answer's pace in words, or ``""`` before any row was read."""
    pace = progress.get("rowsPerSecond")
    return "" if pace is None else f"{float(pace):,.1f} rows/s"
