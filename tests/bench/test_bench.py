"""``python -m bench`` end to end on a small table: every scenario runs and the JSON holds its figures.

The figures themselves are not asserted (timings are noisy here); what is asserted are counts that do
not depend on the machine: rows written, requests per row, no write when nothing changed, and that the
naive baseline really sends one request per row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_benchmark_runs_every_scenario_and_writes_its_figures(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    arguments = ["--rows", "1200", "--users", "1,2", "--time-factor", "0.02", "--naive-sample", "30"]
    assert main([*arguments, "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["rows"] == 1200
    assert document["time_factor"] == 0.02
    assert 0 < document["peak_rss_mb"] < 1000
    results = document["results"]
    assert [(r["scenario"], r["users"]) for r in results] == [
        ("full pass", 1),
        ("incremental after 1 % re-unify", 1),
        ("no change", 1),
        ("full pass", 2),
        ("incremental after 1 % re-unify", 2),
        ("no change", 2),
        ("naive: one PATCH per row", 1),
    ]
    full_one, incremental_one, unchanged_one, full_two, incremental_two, unchanged_two, naive = results
    # the same seeded scene for each number of users: the same rows written
    assert full_one["written"] == full_two["written"] > 900
    assert incremental_one["written"] == incremental_two["written"] > 0
    assert unchanged_one["written"] == unchanged_two["written"] == 0
    assert unchanged_one["requests"].get("update_multiple", 0) == 0
    # bulk writes: a handful of requests for the whole table, against one PATCH per row for the baseline
    assert full_one["requests"]["update_multiple"] <= 6
    assert full_two["requests_per_1000_rows"] < 30
    assert naive["requests"] == {"update": 30}  # one PATCH per row, nothing else
    assert naive["requests_per_1000_rows"] >= 1000
    for result in results:
        assert set(result["cpu_share"]) == {"emulator", "azurite", "worker"}
        assert all(share >= 0 for share in result["cpu_share"].values())
        assert sum(result["throttled"].values()) <= result["requests_per_1000_rows"] * 1200 / 1000
        assert 0 <= result["ceiling_share"] <= 1.2
    assert full_one["ceiling_share"] > 0
