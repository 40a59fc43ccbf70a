"""A task's pace and ETA: pure functions of its record and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hydration.progress import duration_text, eta_text, task_progress
from hydration.state import TaskRecord

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def running(estimate: dict[str, Any] | None = None) -> TaskRecord:
    return TaskRecord(run_id="r", table="contact", status="Running", started=START, estimate=estimate or {})


def test_the_eta_is_the_rows_left_at_the_pace_so_far() -> None:
    task = running({"rows": 3000, "at_least": False, "rows_read": 1000})
    progress = task_progress(task, 1000, now=START + timedelta(seconds=100))
    assert progress.rows_per_second == 10
    assert progress.mapping_rows_left == 3000
    assert progress.eta_seconds == 300
    assert eta_text(progress.to_dict()) == "5 min"


def test_a_count_at_dataverses_limit_gives_a_lower_bound() -> None:
    task = running({"rows": 5000, "at_least": True, "rows_read": 0})
    progress = task_progress(task, 500, now=START + timedelta(seconds=50))
    assert progress.mapping_rows_left == 4500  # rows read since the count come off it
    assert eta_text(progress.to_dict()) == "at least 8 min"


def test_no_count_no_eta_and_a_finished_task_has_none() -> None:
    assert task_progress(running(), 100, now=START + timedelta(seconds=10)).eta_seconds is None
    done = TaskRecord(
        run_id="r",
        table="contact",
        status="Successful",
        started=START,
        ended=START + timedelta(seconds=20),
        estimate={"rows": 10, "at_least": False, "rows_read": 0},
    )
    progress = task_progress(done, 100, now=START + timedelta(hours=5))
    assert progress.rows_per_second == 5  # measured to its end, not to now
    assert progress.eta_seconds is None


def test_before_any_row_or_time_there_is_no_pace() -> None:
    assert task_progress(running(), 0, now=START + timedelta(seconds=5)).rows_per_second is None
    assert task_progress(running(), 10, now=START).rows_per_second is None
    assert task_progress(running({"rows": "x"}), 10, now=START + timedelta(seconds=5)).eta_seconds is None


def test_durations_read_as_people_read_them() -> None:
    assert [duration_text(s) for s in (0, 45, 90, 3600, 3 * 3600 + 5 * 60)] == [
        "0 s",
        "45 s",
        "2 min",
        "1 h 00 min",
        "3 h 05 min",
    ]
