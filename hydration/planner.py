"""Starting runs: which tables are eligible, Skipped outcomes with their reasons, one message per table.

Every trigger (timer, Event Grid, ``POST /api/runs``, the CLI) comes here with a ``RunRequest``. The
planner validates the manifest, applies the eligibility rules (``manifest`` holds those that need only
the manifest; the primary key and the sample check against the data need Dataverse and live here),
records the run with a task per table (Skipped ones with their reason), and enqueues step 0 of each
eligible table. Entries that feed the same Dataverse table become one task.

The timer's ``tick`` starts a run only when something is owed: a table that was never hydrated, a full
pass that is due, a retry list that is not empty, or mapping changes that have settled. It also sweeps
tables whose pass stopped making progress (a lost message chain) by re-enqueueing their current step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .checkpoints import full_pass_reason, lease_expired, window_end
from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, NotFoundError
from .dataverse.metadata import Metadata
from .manifest import (
    RUN_SKIPPED_NONE,
    Entry,
    Manifest,
    ManifestError,
    entry_problem,
    primary_key_problem,
    run_problem,
)
from .manifest import parse as parse_manifest
from .mapping import MAPPING_SET, sources_filter
from .messages import TaskMessage
from .passes import manifest_hash
from .runs import start_run
from .settings import Settings
from .state import StateStore, TaskRecord, new_run_id
from .storage.errors import ConflictError
from .storage.queues import TaskQueue

log = logging.getLogger(__name__)
FAILED_RETRY_AFTER = timedelta(hours=1)
"""The timer retries a table whose task Failed no sooner than this (a permanent error, such as a missing
lookup column, would otherwise record a Failed run on every tick)."""
_REQUEST_KEYS = frozenset({"full", "tables", "plan"})


class RequestError(ValueError):
    """A run request that cannot be honoured (unknown tables, malformed options): the caller's mistake."""


@dataclass(frozen=True)
class RunRequest:
    """What a trigger asks for."""

    trigger: str
    full: bool = False
    tables: tuple[str, ...] | None = None
    """Among the configured tables; ``None`` means all of them."""
    plan: bool = False


def parse_request(data: Any, *, trigger: str) -> RunRequest:
    """Read ``{"full": bool, "tables": [names], "plan": bool}`` (every key optional) strictly."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RequestError("the request must be a JSON object with optional keys full, tables and plan")
    unknown = sorted(set(data) - _REQUEST_KEYS)
    if unknown:
        raise RequestError(f"unknown request keys {unknown[:5]}; allowed: full, tables, plan")
    for key in ("full", "plan"):
        if key in data and not isinstance(data[key], bool):
            raise RequestError(f"{key!r} must be true or false")
    tables = data.get("tables")
    if tables is not None:
        if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables) or len(tables) > 200:
            raise RequestError("'tables' must be a list of table logical names")
        tables = tuple(dict.fromkeys(t.strip().lower() for t in tables))
    return RunRequest(
        trigger=trigger, full=data.get("full", False), tables=tables, plan=data.get("plan", False)
    )


@dataclass
class Eligibility:
    """The planner's verdict over the manifest."""

    eligible: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Dataverse table → the CI-D (data source, table) pairs to hydrate it from."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Dataverse table → why it is Skipped (every entry of it was ineligible)."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Dataverse table → entries left out of an otherwise eligible table, with the reason."""


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

    # -- the manifest -----------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The configured manifest, validated (``ManifestError`` otherwise)."""
        return parse_manifest(self.settings.manifest_text, source=self.settings.manifest_source)

    def _select(self, manifest: Manifest, tables: Sequence[str] | None) -> list[str]:
        configured = manifest.tables
        if tables is None:
            return configured
        unknown = [t for t in tables if t not in configured]
        if unknown:
            raise RequestError(
                f"not configured in the manifest: {', '.join(unknown[:10])[:300]}; "
                f"configured tables: {', '.join(configured) or 'none'}"
            )
        return [t for t in configured if t in tables]

    # -- eligibility ------------------------------------------------------------------------

    def eligibility(self, manifest: Manifest, tables: Sequence[str]) -> Eligibility:
        """Apply every rule to the chosen tables; Dataverse is asked only about entries still eligible."""
        verdict = Eligibility()
        for table in tables:
            reasons: list[str] = []
            kept: list[Entry] = []
            for entry in manifest.entries_of(table):
                problem = entry_problem(entry, manifest)
                if problem is None:
                    kept.append(entry)
                else:
                    reasons.append(problem)
            if kept:
                try:
                    info = self.metadata.table(table)
                except NotFoundError as exc:
                    reasons.extend(f"{e.data_source}/{e.entity} is skipped: {exc}" for e in kept)
                    kept = []
                else:
                    still: list[Entry] = []
                    for entry in kept:
                        problem = primary_key_problem(entry, info.primary_id) or self._sample_problem(
                            entry, info.entity_set, info.primary_id
                        )
                        if problem:
                            reasons.append(problem)
                        else:
                            still.append(entry)
                    kept = still
            if kept:
                verdict.eligible[table] = [e.source for e in kept]
                if reasons:
                    verdict.notes[table] = reasons
            else:
                verdict.skipped[table] = " ".join(reasons)[:2000]
        return verdict

    def _sample_problem(self, entry: Entry, entity_set: str, primary_id: str) -> str | None:
        """Check the manifest against the data: sampled mapping rows must name existing source rows."""
        size = self.settings.sample_size
        if size <= 0:
            return None
        params = {
            "$select": "msdynci_alternatevalue",
            "$filter": sources_filter([entry.source]),
            "$orderby": "modifiedon desc",
            "$top": str(size),
        }
        rows = self.client.get_json(MAPPING_SET, kind="sample_mapping", params=params).get("value") or []
        if not rows:
            return None
        keys = {k for r in rows if (k := odata.try_guid(r.get("msdynci_alternatevalue")))}
        found = 0
        if keys:
            lookup = {"$select": primary_id, "$filter": odata.in_filter(primary_id, sorted(keys))}
            answer = self.client.get_json(entity_set, kind="sample_rows", params=lookup)
            found = sum(1 for r in answer.get("value") or [] if odata.try_guid(r.get(primary_id)) in keys)
        share = found / len(rows)
        if share >= self.settings.sample_min_match:
            return None
        return (
            f"{entry.data_source}/{entry.entity} is skipped because only {found} of {len(rows)} sampled "
            f"mapping rows ({share:.0%}) name an existing {entry.table} row: the primary key used in "
            "unification may not be the table's primary key, or the data was ingested from another "
            "Dataverse organization."
        )

    # -- starting a run ---------------------------------------------------------------------

    def start(self, request: RunRequest) -> Started:
        """Start a run: record it, its Skipped tables, and enqueue one message per eligible table.

        ``RequestError`` for a request naming tables the manifest does not configure (nothing is
        recorded: the caller gets the error). An invalid manifest or a permanent Dataverse error records
        the run Failed with the reason; a transient one propagates (the trigger answers or retries).
        """
        now = self._clock()
        try:
            manifest = self.manifest()
        except ManifestError as exc:
            return self._closed_run(request, now, "Failed", str(exc))
        problem = run_problem(manifest, self.settings.dataverse_url)
        if problem is not None:
            return self._closed_run(request, now, *problem)
        tables = self._select(manifest, request.tables)
        try:
            verdict = self.eligibility(manifest, tables)
        except FatalError as exc:
            return self._closed_run(request, now, "Failed", f"checking eligibility failed: {exc}")
        if not verdict.eligible:
            started = self._closed_run(request, now, "Skipped", RUN_SKIPPED_NONE)
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
            status="Running",
            details="",
            queued=tuple(verdict.eligible),
            skipped=verdict.skipped,
        )

    def reject(self, request: RunRequest, reason: str) -> Started:
        """Record a request that could not be honoured as a Skipped run (an event has no one to answer)."""
        return self._closed_run(request, self._clock(), "Skipped", reason)

    def _closed_run(self, request: RunRequest, now: datetime, status: str, details: str) -> Started:
        run_id = new_run_id(now)
        self.state.create_run(
            run_id, trigger=request.trigger, started=now, details=details[:4000], status=status, ended=now
        )
        log.warning("run %s (%s) %s: %s", run_id, request.trigger, status, details)
        return Started(run_id=run_id, status=status, details=details)

    def _record_skipped(self, run_id: str, verdict: Eligibility, now: datetime) -> None:
        for table, reason in verdict.skipped.items():
            self.state.put_task(
                TaskRecord(
                    run_id=run_id, table=table, status="Skipped", details=reason, started=now, ended=now
                )
            )
        if verdict.notes:
            left_out = " ".join(n for notes in verdict.notes.values() for n in notes)
            current = (self.state.run(run_id) or {}).get("details") or ""
            self.state.update_run(run_id, details=(current + " Left out: " + left_out).strip()[:4000])

    # -- the timer --------------------------------------------------------------------------

    def tick(self) -> Started | None:
        """The timer: sweep stuck tables, then start a run for the tables that owe work, if any."""
        now = self._clock()
        self.sweep(now)
        try:
            manifest = self.manifest()
        except ManifestError as exc:
            return self._closed_run(RunRequest(trigger="timer"), now, "Failed", str(exc))
        if run_problem(manifest, self.settings.dataverse_url) is not None:
            return None  # reported by every explicit run; the timer does not repeat it every tick
        failed = self.recently_failed(now)
        for table, ended in failed.items():
            log.warning(
                "timer: %s failed at %s; the timer retries it an hour later", table, ended.isoformat()
            )
        owed = [t for t in manifest.tables if t not in failed and self.owed(manifest, t, now)]
        if not owed:
            log.info("timer: nothing owed")
            return None
        return self.start(RunRequest(trigger="timer", tables=tuple(owed)))

    def recently_failed(self, now: datetime) -> dict[str, datetime]:
        """Tables whose latest task in the last hour Failed, with when (newest runs are read first)."""
        seen: set[str] = set()
        failed: dict[str, datetime] = {}
        for record in self.state.runs(limit=50):
            started = record.get("started")
            if not isinstance(started, datetime) or now - started > FAILED_RETRY_AFTER:
                break
            for task in self.state.tasks(str(record.get("run_id"))):
                if task.table in seen or task.status == "Skipped":
                    continue
                seen.add(task.table)
                if (
                    task.status == "Failed"
                    and task.ended is not None
                    and now - task.ended < FAILED_RETRY_AFTER
                ):
                    failed[task.table] = task.ended
        return failed

    def owed(self, manifest: Manifest, table: str, now: datetime) -> str | None:
        """Why a table needs a pass now (None if it does not, or is busy)."""
        sources = [e.source for e in manifest.entries_of(table) if entry_problem(e, manifest) is None]
        if not sources:
            return None
        checkpoint = self.state.checkpoint(table).value
        if checkpoint.active:
            return None
        digest = manifest_hash(
            TaskRecord(run_id="", table=table, sources=[list(s) for s in sources]), self.settings.lookup
        )
        reason = full_pass_reason(
            checkpoint, now=now, manifest_hash=digest, full_every=self.settings.full_every, forced=False
        )
        if reason is not None:
            return reason
        if self.state.retry_count(table) > 0:
            return "rows wait on the retry list"
        assert checkpoint.watermark is not None
        newest = self._newest_change(sources, checkpoint.watermark)
        if newest is None:
            return None
        settled_before = window_end(self.client.server_now(), self.settings.settle)
        if newest >= settled_before:
            log.info("timer: %s has mapping changes still settling (newest %s)", table, newest.isoformat())
            return None
        return "the mapping changed"

    def _newest_change(self, sources: Sequence[tuple[str, str]], since: datetime) -> datetime | None:
        params = {
            "$select": "modifiedon",
            "$filter": f"{sources_filter(sources)} and modifiedon ge {odata.moment(since)}",
            "$orderby": "modifiedon desc",
            "$top": "1",
        }
        rows = self.client.get_json(MAPPING_SET, kind="newest_change", params=params).get("value") or []
        if not rows:
            return None
        return datetime.fromisoformat(str(rows[0]["modifiedon"]).replace("Z", "+00:00"))

    def sweep(self, now: datetime) -> list[str]:
        """Re-enqueue the current step of every pass whose lease lapsed without progress."""
        swept: list[str] = []
        for plan in (False, True):
            for table in self._checkpointed_tables(plan):
                loaded = self.state.checkpoint(table, plan=plan)
                checkpoint = loaded.value
                if not checkpoint.active or checkpoint.run_id is None:
                    continue
                if not lease_expired(checkpoint, now=now, ttl=self.settings.lease_ttl):
                    continue
                try:
                    self.state.save_checkpoint(replace(checkpoint, lease_renewed=now), loaded.etag, plan=plan)
                except ConflictError:
                    continue  # it moved: not stuck after all
                kind = "plan" if plan else "hydrate"
                self.queue.send(TaskMessage(checkpoint.run_id, table, checkpoint.seq, kind).encode())
                log.warning(
                    "sweep: run %s table %s made no progress for %s; step %d re-enqueued",
                    checkpoint.run_id,
                    table,
                    self.settings.lease_ttl,
                    checkpoint.seq,
                )
                swept.append(table)
        return swept

    def _checkpointed_tables(self, plan: bool) -> list[str]:
        partition = "plan" if plan else "live"
        return [key for key, _ in self.state.tables.query(self.state.checkpoints_table, partition)]
