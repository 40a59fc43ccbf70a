"""What a pass did, as metrics an operator can chart and alert on, and the record of a task's end.

The engine reports to a ``PassMetrics`` sink at the end of each step and of each task. The default sink
does nothing; ``OpenTelemetryMetrics`` records OpenTelemetry instruments on a meter provider it is
given (the process's, once ``azure_monitor`` has configured the Azure Monitor exporter, or a test's
with an in-memory reader). The engine never touches OpenTelemetry's globals itself.

Metric names and attributes are part of the product's interface: the runbook's queries
(docs/operations.md) and the alert rule (infra/app/alerts.bicep) name them, in Application Insights
``customMetrics.name`` and ``customDimensions``. Attributes are low-cardinality on purpose (table, lane,
status, kind of pass, how a throttle was handled), never the run id: each run would be a series of its
own. The run id is in the logs (``log_context``) and in the task's end record (``task_end_fields``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.metrics import Meter, MeterProvider, get_meter_provider

from .checkpoints import Counters
from .dataverse.client import RequestCounters
from .log_context import LANE, RUN_ID, TABLE
from .state import TaskRecord
from .statuses import Status

ROWS_WRITTEN = "hydration.rows.written"
"""Counter: source rows whose lookup was written (set or changed)."""
ROWS_CLEARED = "hydration.rows.cleared"
"""Counter: stale links cleared by a full pass's reconcile."""
ROWS_ALREADY_CORRECT = "hydration.rows.already_correct"
"""Counter: rows that already held the right link, so were not written."""
THROTTLED_RESPONSES = "hydration.throttled.responses"
"""Counter: 429 answers of Dataverse's service protection."""
THROTTLED_SECONDS = "hydration.throttled.seconds"
"""Counter (s): time spent throttled, waited out in-process or in the queue's visibility delay."""
DURATION = "hydration.pass.duration"
"""Histogram (s): from a task's first step to its end."""
TASKS_ENDED = "hydration.tasks.ended"
"""Counter: tasks that ended, by status (the alert rule's metric twin)."""

STATUS = "hydration.status"
"""Attribute: the task's final status (Successful, Failed, Skipped, Held)."""
ALERT_STATUSES = (Status.FAILED, Status.HELD)
"""The final statuses an operator must act on: the alert rule fires on them, and they log as errors."""
FULL_OR_INCREMENTAL = "hydration.pass"
"""Attribute: ``full`` or ``incremental``; ``none`` when the task ended before its pass started."""
THROTTLE = "hydration.throttle"
"""Attribute of the throttle metrics: ``waited`` (in-process) or ``requeued`` (a delayed message)."""
WAITED = "waited"
REQUEUED = "requeued"

EVENT = "hydration.event"
"""Log field naming a structured record; ``task_ended`` marks the one record of a task's end."""
TASK_ENDED = "task_ended"
ROWS_READ = "hydration.rows.read"
DETAILS = "hydration.details"


@dataclass(frozen=True)
class ThrottleTally:
    """The 429s the process's Dataverse clients waited out, summed, at one moment."""

    responses: int
    seconds: float

    @classmethod
    def of(cls, counters: Iterable[RequestCounters]) -> ThrottleTally:
        """The current totals of ``counters``."""
        responses, seconds = 0, 0.0
        for c in counters:
            with c.lock:
                responses += c.throttled
                seconds += c.throttled_seconds
        return cls(responses, seconds)

    def since(self, earlier: ThrottleTally) -> ThrottleTally:
        """What was waited out between ``earlier`` and this tally."""
        return ThrottleTally(self.responses - earlier.responses, self.seconds - earlier.seconds)


def step_rows(before: Counters, after: Counters) -> Counters:
    """The rows a step added to its pass's counters (``before``: as claimed, ``after``: as saved)."""
    return Counters(
        written=after.written - before.written,
        cleared=after.cleared - before.cleared,
        already_correct=after.already_correct - before.already_correct,
    )


def pass_kind(record: TaskRecord) -> str:
    """``full``, ``incremental``, or ``none`` for a task that ended before its pass started."""
    if record.full is None:
        return "none"
    return "full" if record.full else "incremental"


def pass_seconds(record: TaskRecord) -> float | None:
    """How long the task ran, from its first step to its end (``None`` if it never started)."""
    if record.started is None or record.ended is None:
        return None
    return max(0.0, (record.ended - record.started).total_seconds())


def task_end_fields(record: TaskRecord) -> dict[str, Any]:
    """The structured fields of a task's end record: status, kind of pass, its counts and duration.

    The alert rule queries these (``hydration.event == task_ended`` with a Failed or Held status), and
    the runbook's table-history query reads the counts. Only counts and the task's own details (which
    name tables, steps and reasons, never row contents) go in.
    """
    counters = Counters.from_dict(record.counters)
    seconds = pass_seconds(record)
    return {
        EVENT: TASK_ENDED,
        RUN_ID: record.run_id,
        TABLE: record.table,
        LANE: record.kind,
        STATUS: str(record.status),
        FULL_OR_INCREMENTAL: pass_kind(record),
        DETAILS: record.details[:1000],
        ROWS_READ: counters.rows_read,
        ROWS_WRITTEN: counters.written,
        ROWS_CLEARED: counters.cleared,
        ROWS_ALREADY_CORRECT: counters.already_correct,
        THROTTLED_SECONDS: round(counters.throttled_seconds, 3),
        DURATION: None if seconds is None else round(seconds, 3),
    }


class PassMetrics(Protocol):
    """Where the engine reports what its steps and tasks did."""

    def rows(self, table: str, lane: str, done: Counters) -> None:
        """One step's rows: ``done`` holds what the step added to the pass's counters."""
        ...

    def throttled(self, table: str, lane: str, tally: ThrottleTally, *, handling: str) -> None:
        """429s met by one step, ``waited`` out in-process or ``requeued`` with a delay."""
        ...

    def task_ended(self, record: TaskRecord, lane: str) -> None:
        """A task reached its final status (``record`` as saved)."""
        ...


class NoMetrics:
    """The default sink: the engine's reports go nowhere (no exporter is configured)."""

    def rows(self, table: str, lane: str, done: Counters) -> None:
        """Nothing to record."""

    def throttled(self, table: str, lane: str, tally: ThrottleTally, *, handling: str) -> None:
        """Nothing to record."""

    def task_ended(self, record: TaskRecord, lane: str) -> None:
        """Nothing to record."""


NO_METRICS = NoMetrics()


class OpenTelemetryMetrics:
    """The engine's reports as OpenTelemetry instruments of the meter ``hydration``."""

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter: Meter = (provider or get_meter_provider()).get_meter("hydration")
        self._written = meter.create_counter(ROWS_WRITTEN, unit="{row}", description="Links written")
        self._cleared = meter.create_counter(ROWS_CLEARED, unit="{row}", description="Stale links cleared")
        self._correct = meter.create_counter(
            ROWS_ALREADY_CORRECT, unit="{row}", description="Rows already holding the right link"
        )
        self._responses = meter.create_counter(
            THROTTLED_RESPONSES, unit="{response}", description="429 answers of service protection"
        )
        self._throttled = meter.create_counter(THROTTLED_SECONDS, unit="s", description="Time throttled")
        self._duration = meter.create_histogram(DURATION, unit="s", description="Duration of a pass")
        self._ended = meter.create_counter(TASKS_ENDED, unit="{task}", description="Tasks ended")

    def rows(self, table: str, lane: str, done: Counters) -> None:
        """Add a step's written, cleared and already-correct rows (zeros are not recorded)."""
        where = {TABLE: table, LANE: lane}
        for counter, value in (
            (self._written, done.written),
            (self._cleared, done.cleared),
            (self._correct, done.already_correct),
        ):
            if value > 0:
                counter.add(value, where)

    def throttled(self, table: str, lane: str, tally: ThrottleTally, *, handling: str) -> None:
        """Add a step's 429s and the seconds they cost."""
        if tally.responses <= 0 and tally.seconds <= 0:
            return
        where = {TABLE: table, LANE: lane, THROTTLE: handling}
        self._responses.add(max(tally.responses, 0), where)
        self._throttled.add(max(tally.seconds, 0.0), where)

    def task_ended(self, record: TaskRecord, lane: str) -> None:
        """Count the task by status and record its pass's duration."""
        where = {
            TABLE: record.table,
            LANE: lane,
            STATUS: str(record.status),
            FULL_OR_INCREMENTAL: pass_kind(record),
        }
        self._ended.add(1, where)
        seconds = pass_seconds(record)
        if seconds is not None:
            self._duration.record(seconds, where)
