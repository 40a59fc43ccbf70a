"""The runbook's queries name exactly what the app emits: metric names and ``customDimensions`` keys."""

from __future__ import annotations

import re
from pathlib import Path

from hydration import log_context, telemetry

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
QUERIES = "\n".join(re.findall(r"```kusto\n(.*?)```", DOC, flags=re.S))
METRICS = {
    telemetry.ROWS_WRITTEN,
    telemetry.ROWS_CLEARED,
    telemetry.ROWS_ALREADY_CORRECT,
    telemetry.THROTTLED_RESPONSES,
    telemetry.THROTTLED_SECONDS,
    telemetry.DURATION,
    telemetry.TASKS_ENDED,
}
FIELDS = {
    log_context.RUN_ID,
    log_context.TABLE,
    log_context.LANE,
    telemetry.EVENT,
    telemetry.STATUS,
    telemetry.FULL_OR_INCREMENTAL,
    telemetry.THROTTLE,
    telemetry.DETAILS,
    telemetry.ROWS_READ,
    *METRICS - {telemetry.THROTTLED_RESPONSES, telemetry.TASKS_ENDED},
}


def test_the_queries_use_only_fields_and_metrics_the_app_emits() -> None:
    assert QUERIES.count("customDimensions") > 20
    used = set(re.findall(r'customDimensions\["([^"]+)"\]', QUERIES))
    assert used <= FIELDS, used - FIELDS
    named = set(re.findall(r'"(hydration\.[a-z_.]+)"', QUERIES)) - used
    assert named <= METRICS, named - METRICS
    assert f'== "{telemetry.TASK_ENDED}"' in QUERIES


def test_every_metric_and_field_is_documented() -> None:
    for name in METRICS | FIELDS:
        assert f"`{name}`" in DOC, name
    for value in (telemetry.WAITED, telemetry.REQUEUED, *telemetry.ALERT_STATUSES):
        assert f"`{value}`" in DOC or value in DOC, value


def test_every_status_has_its_row() -> None:
    for status in ("Queued", "Running", "Successful", "Failed", "Skipped", "Held"):
        assert f"\n| {status} |" in DOC, status
