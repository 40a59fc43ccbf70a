"""Starting runs: the one entry point of every trigger, from a request to one message per eligible table.

Every trigger (timer, Event Grid, ``POST /api/runs``, the CLI) comes here with a ``RunRequest``
(``run_request``). The planner validates the manifest, asks ``eligibility`` which tables may be
linked, records the run with a task per table (Skipped ones with their reason), and enqueues step 0 of
each eligible table. The timer's ``tick`` first asks ``scheduling`` what is owed and sweeps stuck
passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError
from .dataverse.metadata import Metadata
from .eligibility import Eligibility, EligibilityCheck, SampleSettings
from .manifest import RUN_SKIPPED_NONE, Manifest, ManifestError, run_problem
from .manifest import parse as parse_manifest
from .run_request import RunRequest, RunRequestError, parse_request, select_tables
from .runs import start_run
from .scheduling import Schedule, configuration_fingerprint
from .settings import Settings
from .state import StateStore, TaskRecord, new_run_id
from .statuses import Status
from .storage.queues import TaskQueue

__all__ = ["Planner", "RunRequest", "RunRequestError", "Started", "parse_request"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """What a request led to."""

    run_id: str
    status: str
    details: str
    queued: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)


class Planner:
    """Starts runs for one organization and one storage account."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: DataverseClient,
        state: StateStore,
        queue: TaskQueue,
        metadata: Metadata | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.client = client
        self.state = state
        self.queue = queue
        self.metadata = metadata or Metadata(client)
        self._clock = clock
        self.check = EligibilityCheck(
            client=client,
            metadata=self.metadata,
            sample=SampleSettings(size=settings.sample_size, min_match=settings.sample_min_match),
        )
        self.schedule = Schedule(settings=settings, client=client, state=state, queue=queue, check=self.check)

    # -- the manifest -----------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The configured manifest, validated (``ManifestError`` otherwise)."""
        return parse_manifest(self.settings.manifest_text, source=self.settings.manifest_source)

    # -- starting a run ---------------------------------------------------------------------

    def start(self, request: RunRequest) -> Started:
        """Start a run: record it, its Skipped tables, and enqueue one message per eligible table.

        ``RunRequestError`` for a request naming tables the manifest does not configure (nothing is
        recorded: the caller gets the error). An invalid manifest or a permanent Dataverse error records
        the run Failed with the reason; a transient one propagates (the trigger answers or retries).
        """
        now = self._clock()
        try:
            manifest = self.manifest()
        except ManifestError as exc:
            return self._closed_run(request, now, Status.FAILED, str(exc))
        problem = run_problem(manifest, self.settings.dataverse_url)
        if problem is not None:
            return self._closed_run(request, now, *problem)
        tables = select_tables(manifest, request.tables)
        try:
            verdict = self.check.verdict(manifest, tables)
        except FatalError as exc:
            return self._closed_run(request, now, Status.FAILED, f"checking eligibility failed: {exc}")
        if not verdict.eligible:
            started = self._closed_run(request, now, Status.SKIPPED, RUN_SKIPPED_NONE)
            self._record_skipped(started.run_id, verdict, now)
            return replace(started, skipped=verdict.skipped)
        run_id = start_run(
            self.state,
            self.queue,
            verdict.eligible,
            now=now,
            trigger=request.trigger,
            full=request.full,
            plan=request.plan,
            approve=request.approve,
        )
        self._record_skipped(run_id, verdict, now)
        log.info(
            "run %s (%s) started: %d tables queued, %d skipped",
            run_id,
            request.trigger,
            len(verdict.eligible),
            len(verdict.skipped),
        )
        return Started(
            run_id=run_id,
            status=Status.RUNNING,
            details="",
            queued=tuple(verdict.eligible),
            skipped=verdict.skipped,
        )

    def reject(self, request: RunRequest, reason: str) -> Started:
        """Record a request that could not be honoured as a Skipped run (an event has no one to answer)."""
        return self._closed_run(request, self._clock(), Status.SKIPPED, reason)

    def _closed_run(self, request: RunRequest, now: datetime, status: str, details: str) -> Started:
        run_id = new_run_id(now)
        self.state.create_run(
            run_id, trigger=request.trigger, started=now, details=details[:4000], status=status, ended=now
        )
        log.warning("run %s (%s) %s: %s", run_id, request.trigger, status, details)
        return Started(run_id=run_id, status=status, details=details)

    def _record_skipped(self, run_id: str, verdict: Eligibility, now: datetime) -> None:
        """Record the Skipped tables' tasks, and name left-out entries and sample findings in the run."""
        for table, reason in verdict.skipped.items():
            self.state.put_task(
                TaskRecord(
                    run_id=run_id, table=table, status=Status.SKIPPED, details=reason, started=now, ended=now
                )
            )
        parts = []
        if verdict.notes:
            parts.append("Left out: " + " ".join(n for notes in verdict.notes.values() for n in notes))
        if verdict.sampled:
            parts.append("Sampled: " + " ".join(n for notes in verdict.sampled.values() for n in notes))
        if parts:
            current = (self.state.run(run_id) or {}).get("details") or ""
            self.state.update_run(run_id, details=" ".join([current, *parts]).strip()[:4000])

    # -- the timer --------------------------------------------------------------------------

    def tick(self) -> Started | None:
        """The timer: sweep stuck tables, then start a run for the tables that owe work, if any."""
        now = self._clock()
        self.sweep(now)
        try:
            manifest = self.manifest()
        except ManifestError as exc:
            return self._configuration_problem(now, Status.FAILED, str(exc))
        problem = run_problem(manifest, self.settings.dataverse_url)
        if problem is not None:
            return self._configuration_problem(now, *problem)
        owed = self.schedule.owed_tables(manifest, now)
        if not owed:
            log.info("timer: nothing owed")
            return None
        return self.start(RunRequest(trigger="timer", tables=tuple(owed)))

    def _configuration_problem(self, now: datetime, status: str, details: str) -> Started | None:
        """Record a configuration no run can go ahead with, once per change of it, not on every tick.

        The run carries the configuration's fingerprint; while the timer's latest run has the same one,
        the problem is on record already (the status shows it) and the tick only logs.
        """
        fingerprint = configuration_fingerprint(self.settings)
        if self.schedule.last_timer_configuration() == fingerprint:
            log.info("timer: the configuration is unchanged and its problem on record: %s", details[:200])
            return None
        started = self._closed_run(RunRequest(trigger="timer"), now, status, details)
        self.state.update_run(started.run_id, configuration=fingerprint)
        return started

    def sweep(self, now: datetime) -> list[str]:
        """Re-enqueue the current step of every pass whose lease lapsed without progress."""
        return self.schedule.sweep(now)
