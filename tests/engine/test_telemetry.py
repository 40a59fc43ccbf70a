"""The engine's metrics, recorded by a real OpenTelemetry SDK during real passes on the emulator and Azurite.

The meter provider is the SDK's own with an in-memory reader, injected into the worker: what these tests
read is what the Azure Monitor exporter would be handed. The values are checked against the task's
counters and against the emulator's own count of what it wrote and throttled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.dataverse.client import ClientSettings
from hydration.link_settings import LinkSettings
from hydration.log_context import LANE, TABLE
from hydration.telemetry import (
    DURATION,
    FULL_OR_INCREMENTAL,
    REQUEUED,
    ROWS_ALREADY_CORRECT,
    ROWS_CLEARED,
    ROWS_WRITTEN,
    STATUS,
    TASKS_ENDED,
    THROTTLE,
    THROTTLED_RESPONSES,
    THROTTLED_SECONDS,
    WAITED,
    OpenTelemetryMetrics,
)
from hydration.worker import Outcome
from tests.engine.harness import CONTACT_SOURCES, Harness

pytestmark = pytest.mark.integration


class Readings:
    """The data points an in-memory reader collected, summed by metric name and attributes."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.points: list[tuple[str, dict[str, Any], Any]] = []
        data = reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "hydration"
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        self.points.append((metric.name, dict(point.attributes or {}), point))

    def total(self, name: str, **where: str) -> float:
        """The sum of a counter's points whose attributes include ``where``."""
        return sum(p.value for n, a, p in self._matching(name, where))

    def histogram(self, name: str, **where: str) -> tuple[int, float]:
        """Count and sum of a histogram's points whose attributes include ``where``."""
        found = [p for _, _, p in self._matching(name, where)]
        assert all(isinstance(p, HistogramDataPoint) for p in found)
        return sum(p.count for p in found), sum(p.sum for p in found)

    def attributes(self, name: str) -> list[dict[str, Any]]:
        """The attribute sets recorded for a metric."""
        return [a for n, a, _ in self.points if n == name]

    def _matching(self, name: str, where: dict[str, str]) -> Iterator[tuple[str, dict[str, Any], Any]]:
        keys = {k.replace("__", "."): v for k, v in where.items()}
        for n, a, p in self.points:
            if n == name and all(a.get(k) == v for k, v in keys.items()):
                yield n, a, p


@dataclass
class Meter:
    """A real SDK meter provider and the in-memory reader it reports to."""

    provider: MeterProvider
    reader: InMemoryMetricReader


@pytest.fixture
def meter() -> Iterator[Meter]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Meter(provider, reader)
    provider.shutdown()


def metered(emulator: EmulatorClient, meter: Meter, **kwargs: Any) -> Harness:
    """A harness whose worker reports to ``meter``.

    What is measured is the worker's reporting, not storage, so state and queue are in memory; the
    throttling scenarios pass a ``FakeClock``, so a step re-enqueued with a delay is delivered at once.
    """
    return Harness(emulator, None, metrics=OpenTelemetryMetrics(meter.provider), **kwargs)


def test_a_first_pass_and_a_full_pass_record_what_they_wrote_cleared_and_found_correct(
    emulator: EmulatorClient, meter: Meter
) -> None:
    emulator.reset(contacts=800, leads=240, seed=11)
    harness = metered(emulator, meter, link=LinkSettings(page_size=400, write_batch=100, step_pages=1))
    _, first, _ = harness.run()
    readings = Readings(meter.reader)
    written = harness.written()
    for table, task in first.items():
        assert task.status == "Successful"
        assert written[table] == task.counters["written"] > 0
        assert readings.total(ROWS_WRITTEN, **{TABLE: table, LANE: "hydrate"}) == written[table]
        assert readings.total(ROWS_ALREADY_CORRECT, **{TABLE: table}) == task.counters["already_correct"]
        assert readings.total(TASKS_ENDED, **{TABLE: table, STATUS: "Successful"}) == 1
        count, seconds = readings.histogram(DURATION, **{TABLE: table, FULL_OR_INCREMENTAL: "full"})
        assert task.started is not None
        assert task.ended is not None
        assert count == 1
        assert seconds == pytest.approx((task.ended - task.started).total_seconds(), abs=0.01)
    assert readings.total(ROWS_CLEARED) == 0

    changes = harness.em.reunify(0.01, seed=4)
    assert changes["deleted"]
    harness.settle()
    stale = harness.summary("contact")["stale"]
    assert stale > 0
    _, full, _ = harness.run(full=True)
    after = Readings(meter.reader)  # cumulative: both runs
    assert full["contact"].counters["cleared"] == stale
    assert after.total(ROWS_CLEARED, **{TABLE: "contact"}) == stale
    for table in full:
        both = first[table].counters["written"] + full[table].counters["written"]
        assert after.total(ROWS_WRITTEN, **{TABLE: table}) == both
        correct = first[table].counters["already_correct"] + full[table].counters["already_correct"]
        assert after.total(ROWS_ALREADY_CORRECT, **{TABLE: table}) == correct
        assert after.total(TASKS_ENDED, **{TABLE: table}) == 2


def test_throttles_waited_out_and_requeued_are_counted_as_the_emulator_answered_them(
    emulator: EmulatorClient, meter: Meter
) -> None:
    emulator.reset(contacts=600, leads=0, seed=8)
    harness = metered(
        emulator,
        meter,
        clock=FakeClock(),
        link=LinkSettings(page_size=300, write_batch=100, parallelism=1),
        client_settings=ClientSettings(inline_throttle_limit=1.0),
    )
    # Two short 429s in a row, waited out in-process (the backoff's floors: 0.5 s, then 1 s), then one
    # longer than the client waits in-process: re-enqueued with its Retry-After as the delay.
    emulator.faults(
        [
            {"kind": "throttle", "path": "UpdateMultiple$", "retry_after": 0, "nth": 1, "count": 2},
            {"kind": "throttle", "path": "UpdateMultiple$", "retry_after": 2, "nth": 4, "count": 1},
        ]
    )
    _, tasks, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    fired = emulator.faults()["fired"]
    emulator.clear_faults()
    assert fired == [2, 1]
    assert harness.outcomes[Outcome.THROTTLED] == 1
    task = tasks["contact"]
    assert task.status == "Successful"
    readings = Readings(meter.reader)
    assert readings.total(THROTTLED_RESPONSES, **{TABLE: "contact", THROTTLE: WAITED}) == 2
    assert readings.total(THROTTLED_RESPONSES, **{TABLE: "contact", THROTTLE: REQUEUED}) == 1
    assert readings.total(THROTTLED_RESPONSES) == sum(fired)
    requeued_seconds = readings.total(THROTTLED_SECONDS, **{THROTTLE: REQUEUED})
    assert requeued_seconds == task.counters["throttled_seconds"] == 2
    assert readings.total(THROTTLED_SECONDS, **{THROTTLE: WAITED}) == 1.5
    written = readings.total(ROWS_WRITTEN)
    assert written == task.counters["written"] > 0
    # The page whose write met the long 429 had chunks that landed before it; the page was not committed,
    # so its step was redone and found those rows correct. The emulator counts their writes once, the
    # pass counts them as already correct. This scene links no contact beforehand, so the emulator's
    # count is exactly the pass's written plus already correct.
    assert readings.total(ROWS_ALREADY_CORRECT) == task.counters["already_correct"]
    assert harness.written()["contact"] == written + task.counters["already_correct"]


def test_a_failed_task_is_counted_by_status_and_a_dry_run_by_its_lane(
    emulator: EmulatorClient, meter: Meter
) -> None:
    harness = metered(
        emulator,
        meter,
        clock=FakeClock(),
        link=LinkSettings(page_size=300, write_batch=100, parallelism=1),
        client_settings=ClientSettings(inline_throttle_limit=1.0),
        max_throttled_requeues=1,
    )
    _, plan, _ = harness.run(tables={"contact": CONTACT_SOURCES}, plan=True)
    assert harness.written() == {}
    readings = Readings(meter.reader)
    assert readings.total(ROWS_WRITTEN, **{LANE: "plan"}) == plan["contact"].counters["written"] > 0
    assert readings.total(ROWS_WRITTEN, **{LANE: "hydrate"}) == 0

    # Throttled past the cap of re-enqueues: the task is Failed with the reason.
    emulator.faults([{"kind": "throttle", "path": "UpdateMultiple$", "retry_after": 2, "count": 2}])
    _, live, _ = harness.run(tables={"contact": CONTACT_SOURCES})
    emulator.clear_faults()
    assert live["contact"].status == "Failed"
    failed = Readings(meter.reader)
    assert failed.total(TASKS_ENDED, **{TABLE: "contact", STATUS: "Failed", LANE: "hydrate"}) == 1
    assert {a[STATUS] for a in failed.attributes(TASKS_ENDED)} == {"Successful", "Failed"}
    for attributes in failed.attributes(ROWS_WRITTEN) + failed.attributes(TASKS_ENDED):
        assert "hydration.run_id" not in attributes  # one series per table, not per run
