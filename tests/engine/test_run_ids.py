"""Run ids: unique, valid in messages, and listed newest first even within one second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hydration.messages import RUN_ID
from hydration.state import StateStore, new_run_id, run_row_key
from hydration.storage.tables import MemoryStateTables


def test_runs_started_within_one_second_are_listed_newest_first() -> None:
    state = StateStore(MemoryStateTables())
    base = datetime(2026, 11, 29, 3, 0, 0, 5000, tzinfo=UTC)
    ids = [new_run_id(base + timedelta(milliseconds=ms)) for ms in (0, 1, 250, 999, 1000, 1001)]
    for run_id in ids:
        assert RUN_ID.fullmatch(run_id)
        state.create_run(run_id, trigger="test", started=base)
    assert [r["run_id"] for r in state.runs()] == list(reversed(ids))


def test_run_ids_are_unique_within_one_millisecond() -> None:
    moment = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)
    assert len({new_run_id(moment) for _ in range(200)}) == 200


def test_an_id_of_another_shape_still_has_a_key() -> None:
    assert run_row_key("20261129T030000Z-ffffffff").endswith("-20261129T030000Z-ffffffff")
