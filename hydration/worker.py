"""One queue message: claim the step, do it, checkpoint, and enqueue the continuation.

Delivery is at least once, so every path is idempotent:

- a message whose step the checkpoint has passed is a duplicate: if the checkpoint says the
  continuation was never sent, it is sent now, otherwise the message is dropped;
- the step is claimed with an ETag-conditional save of the checkpoint, so two copies of one message
  cannot both run it; a crash before the step's checkpoint means the step is redone, and its writes
  find the rows already correct;
- the checkpoint is saved before the continuation is enqueued and marked sent after, so a crash in
  between is repaired by the message's redelivery (a duplicate continuation is dropped by its claim).

A long throttle (``Retry-After`` beyond the client's in-process limit) re-enqueues the same step with a
visibility delay and returns normally, so throttling never spends the queue's dequeue count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum

from .checkpoints import (
    Checkpoint,
    Counters,
    full_pass_reason,
    lease_expired,
    next_step,
    start_pass,
    window_end,
)
from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, ThrottledError
from .dataverse.metadata import LookupSpec, Metadata
from .linking import Linker, LinkSettings, StepResult, Target
from .messages import MessageError, TaskMessage
from .pipeline import StepPipeline
from .state import FINAL, StateStore, TaskRecord
from .storage.errors import ConflictError
from .storage.queues import TaskQueue
from .writers import WritePool

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What became of a message."""

    DONE = "done"
    """The step ran (and its continuation was sent, or the pass finished)."""
    DUPLICATE = "duplicate"
    """Nothing to do: an old or repeated message (a missing continuation was resent if needed)."""
    THROTTLED = "throttled"
    """Re-enqueued with a delay because the server asked to wait."""
    SKIPPED = "skipped"
    """The table was busy with another run; a rerun was requested."""
    FAILED = "failed"
    """A permanent error: the task is recorded Failed."""
    REJECTED = "rejected"
    """The message itself is invalid."""


@dataclass(frozen=True)
class EngineSettings:
    """The worker's behaviour (from the app's settings)."""

    settle: timedelta = timedelta(minutes=15)
    full_every: timedelta = timedelta(days=7)
    lease_ttl: timedelta = timedelta(minutes=30)
    lookup: LookupSpec = field(default_factory=LookupSpec)
    allow_create_lookup: bool = False
    link: LinkSettings = field(default_factory=LinkSettings)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def manifest_hash(task: TaskRecord, lookup: LookupSpec) -> str:
    """A digest of what a table is hydrated with; when it changes, a full pass is owed."""
    data = json.dumps([sorted(task.sources), lookup.schema_name], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:32]


class Worker:
    """Handles task messages for one organization and one storage account."""

    def __init__(
        self,
        *,
        client: DataverseClient,
        state: StateStore,
        queue: TaskQueue,
        settings: EngineSettings,
        metadata: Metadata | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        write_clients: Sequence[DataverseClient] = (),
    ) -> None:
        self.client = client
        self.state = state
        self.queue = queue
        self.settings = settings
        self.metadata = metadata or Metadata(client)
        self._clock = clock
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}
        self._write_clients = list(write_clients)
        """Further application users (a credential pool): writes are spread over them and ``client``."""
        self._pool: WritePool | None = None

    # -- entry point ------------------------------------------------------------------------

    def handle(self, text: str | None) -> Outcome:
        """Handle one message; retriable errors propagate so the queue redelivers."""
        try:
            message = TaskMessage.decode(text)
        except MessageError as exc:
            log.error("rejected a queue message: %s", exc)
            return Outcome.REJECTED
        task = self.state.task(message.run_id, message.table)
        if task is None:
            log.error("rejected a message for unknown task %s/%s", message.run_id, message.table)
            return Outcome.REJECTED
        plan = message.kind == "plan"
        loaded = self.state.checkpoint(message.table, plan=plan)
        checkpoint, etag = loaded.value, loaded.etag
        try:
            if message.seq == 0 and checkpoint.run_id != message.run_id:
                if task.value.status in FINAL:
                    return Outcome.DUPLICATE
                started = self._start(message, task.value, checkpoint, etag)
                if isinstance(started, Outcome):
                    return started
                checkpoint, etag = started
            elif checkpoint.run_id != message.run_id or checkpoint.seq != message.seq:
                return self._duplicate(message, checkpoint, etag)
            return self._step(message, task.value, checkpoint, etag)
        except ThrottledError as exc:
            return self._throttled(message, exc)
        except FatalError as exc:
            self.fail(message.run_id, message.table, str(exc), plan=plan)
            return Outcome.FAILED

    # -- starting a pass --------------------------------------------------------------------

    def _start(
        self, message: TaskMessage, task: TaskRecord, checkpoint: Checkpoint, etag: str
    ) -> Outcome | tuple[Checkpoint, str]:
        now = self._clock()
        plan = message.kind == "plan"
        if checkpoint.active and not lease_expired(checkpoint, now=now, ttl=self.settings.lease_ttl):
            try:
                self.state.save_checkpoint(replace(checkpoint, rerun_requested=True), etag, plan=plan)
            except ConflictError:
                return Outcome.DUPLICATE
            self.state.update_task(
                message.run_id,
                message.table,
                status="Skipped",
                ended=now,
                details=f"the table is being hydrated by run {checkpoint.run_id}; a rerun was requested",
            )
            return Outcome.SKIPPED
        target, created = self._target(task)
        live = checkpoint if not plan else self.state.checkpoint(message.table).value
        digest = manifest_hash(task, self.settings.lookup)
        if created:
            live = replace(live, full_pass_owed=True)
        reason = full_pass_reason(
            live, now=now, manifest_hash=digest, full_every=self.settings.full_every, forced=bool(task.full)
        )
        base = replace(checkpoint, watermark=live.watermark) if plan else live
        end = window_end(self.client.server_now(max_age=0), self.settings.settle)
        earlier = Counters(throttled_seconds=Counters.from_dict(task.counters).throttled_seconds)
        started = replace(
            start_pass(
                base,
                run_id=message.run_id,
                owner=self.settings.owner,
                now=now,
                end=end,
                full=reason is not None,
            ),
            manifest_hash=digest,
        )
        started = replace(started, counters=started.counters + earlier)
        new_etag = self.state.save_checkpoint(started, etag, plan=plan)
        self.state.update_task(
            message.run_id,
            message.table,
            status="Running",
            started=now,
            full=reason is not None,
            details=reason or "incremental pass",
            lookup={
                "attribute": target.lookup.attribute,
                "navigation_property": target.lookup.navigation_property,
                "created": created,
            },
        )
        log.info(
            "run %s table %s: %s pass started (%s)",
            message.run_id,
            message.table,
            "full" if reason else "incremental",
            reason or "changes only",
        )
        return started, new_etag

    def _target(self, task: TaskRecord) -> tuple[Target, bool]:
        table = self.metadata.table(odata.logical_name(task.table))
        lookup = self.metadata.ensure_lookup(
            task.table, self.settings.lookup, allow_create=self.settings.allow_create_lookup
        )
        sources = tuple((str(ds), str(entity)) for ds, entity in task.sources)
        if not sources:
            raise FatalError(f"the task for {task.table} names no CI-D data sources")
        target = Target(
            table=table,
            lookup=lookup,
            sources=sources,
            update_multiple=self.metadata.supports_update_multiple(task.table),
        )
        self._targets[(task.table, sources)] = target
        return target, lookup.created

    def _linker(self, task: TaskRecord, plan: bool) -> Linker:
        sources = tuple((str(ds), str(entity)) for ds, entity in task.sources)
        target = self._targets.get((task.table, sources)) or self._target(task)[0]
        settings = replace(self.settings.link, plan=plan)
        if self._pool is None:
            self._pool = settings.write_pool([self.client, *self._write_clients])
        return Linker(self.client, target, settings, now=self._clock, pool=self._pool)

    # -- duplicates -------------------------------------------------------------------------

    def _duplicate(self, message: TaskMessage, checkpoint: Checkpoint, etag: str) -> Outcome:
        if checkpoint.run_id != message.run_id or checkpoint.seq < message.seq:
            log.info("dropped a stale message %s/%s step %d", message.run_id, message.table, message.seq)
            return Outcome.DUPLICATE
        if checkpoint.active and checkpoint.sent_seq < checkpoint.seq:
            self._send_continuation(message, checkpoint, etag)
        elif not checkpoint.active:
            current = self.state.task(message.run_id, message.table)
            if current is not None and current.value.status == "Running":
                self._finish_task(message, checkpoint)
        return Outcome.DUPLICATE

    def _send_continuation(self, message: TaskMessage, checkpoint: Checkpoint, etag: str) -> None:
        continuation = TaskMessage(message.run_id, message.table, checkpoint.seq, message.kind)
        self.queue.send(continuation.encode())
        with contextlib.suppress(ConflictError):  # the next step already ran: the continuation did its job
            self.state.save_checkpoint(
                replace(checkpoint, sent_seq=checkpoint.seq), etag, plan=message.kind == "plan"
            )

    # -- one step ---------------------------------------------------------------------------

    def _step(self, message: TaskMessage, task: TaskRecord, checkpoint: Checkpoint, etag: str) -> Outcome:
        plan = message.kind == "plan"
        now = self._clock()
        try:
            etag = self.state.save_checkpoint(
                replace(checkpoint, lease_renewed=now, lease_owner=self.settings.owner), etag, plan=plan
            )
        except ConflictError:
            return Outcome.DUPLICATE
        linker = self._linker(task, plan)

        def finalize(last: Checkpoint) -> Checkpoint:
            """The step's end: the next step number, and a requested rerun's incremental pass."""
            last = next_step(last)
            if not last.active and last.rerun_requested and not plan:
                end = window_end(self.client.server_now(max_age=0), self.settings.settle)
                last = start_pass(
                    last,
                    run_id=message.run_id,
                    owner=self.settings.owner,
                    now=now,
                    end=end,
                    full=False,
                    seq=last.seq,
                )
                last = replace(last, sent_seq=last.seq - 1)
            return last

        def record(result: StepResult, resolve: bool) -> None:
            self._record_retries(checkpoint.table, result, plan=plan, now=now, resolve=resolve)

        pipeline = StepPipeline(
            linker=linker,
            state=self.state,
            settings=linker.settings,
            plan=plan,
            record=record,
            clock=self._clock,
        )
        done = pipeline.run(checkpoint, etag, finalize)
        if done is None:
            log.warning(
                "run %s table %s step %d: the checkpoint moved meanwhile; stopping this copy",
                message.run_id,
                message.table,
                message.seq,
            )
            return Outcome.DUPLICATE
        checkpoint, etag = done
        self.state.update_task(message.run_id, message.table, counters=checkpoint.counters.to_dict())
        if checkpoint.active:
            self._send_continuation(message, checkpoint, etag)
        else:
            self._finish_task(message, checkpoint)
        return Outcome.DONE

    def _record_retries(
        self, table: str, result: StepResult, *, plan: bool, now: datetime, resolve: bool
    ) -> None:
        if plan:
            return
        for source_id, (reason, profile) in result.retries.items():
            self.state.add_retry(table, source_id, reason=reason, profile=profile, now=now)
        if resolve:
            for source_id in result.resolved:
                self.state.remove_retry(table, source_id)

    # -- endings ----------------------------------------------------------------------------

    def _finish_task(self, message: TaskMessage, checkpoint: Checkpoint) -> None:
        counters = checkpoint.counters
        plan = message.kind == "plan"
        verb = "would write" if plan else "wrote"
        details = (
            f"{'full' if checkpoint.full else 'incremental'} pass: read {counters.rows_read} rows, {verb} "
            f"{counters.written}, {counters.already_correct} already correct, "
            f"{counters.no_profile} waiting for their profile, {counters.no_source} without a source row, "
            f"{counters.stale} stale ({counters.cleared} cleared)"
        )
        self.state.update_task(
            message.run_id,
            message.table,
            status="Successful",
            ended=self._clock(),
            details=details,
            counters=counters.to_dict(),
        )
        log.info("run %s table %s: %s", message.run_id, message.table, details)

    def _throttled(self, message: TaskMessage, exc: ThrottledError) -> Outcome:
        delay = max(1, math.ceil(exc.retry_after))
        self.queue.send(message.encode(), delay_seconds=delay)
        plan = message.kind == "plan"
        loaded = self.state.checkpoint(message.table, plan=plan)
        checkpoint = loaded.value
        if checkpoint.run_id == message.run_id and checkpoint.seq == message.seq:
            counters = checkpoint.counters + Counters(throttled_seconds=float(delay))
            with contextlib.suppress(ConflictError):  # only the throttled seconds would be lost
                self.state.save_checkpoint(replace(checkpoint, counters=counters), loaded.etag, plan=plan)
                self.state.update_task(message.run_id, message.table, counters=counters.to_dict())
        else:  # throttled before the pass started: the task keeps the count until the start takes it over
            task = self.state.task(message.run_id, message.table)
            if task is not None:
                counters = Counters.from_dict(task.value.counters) + Counters(throttled_seconds=float(delay))
                self.state.update_task(message.run_id, message.table, counters=counters.to_dict())
        log.warning(
            "run %s table %s step %d: throttled for %ds; re-enqueued",
            message.run_id,
            message.table,
            message.seq,
            delay,
        )
        return Outcome.THROTTLED

    def fail(self, run_id: str, table: str, reason: str, *, plan: bool = False) -> None:
        """Record a task Failed and release its table's lease (the poison handler uses this too)."""
        loaded = self.state.checkpoint(table, plan=plan)
        checkpoint = loaded.value
        if checkpoint.run_id == run_id and checkpoint.active:
            owed = checkpoint.full_pass_owed or checkpoint.full
            released = replace(
                checkpoint, phase="idle", lease_owner=None, lease_renewed=None, full_pass_owed=owed
            )
            try:
                self.state.save_checkpoint(released, loaded.etag, plan=plan)
            except ConflictError:
                log.warning("table %s: the checkpoint moved while releasing the lease", table)
        self.state.update_task(run_id, table, status="Failed", ended=self._clock(), details=reason[:1000])
        log.error("run %s table %s failed: %s", run_id, table, reason)

    def handle_poison(self, text: str | None, dequeue_count: int) -> None:
        """The queue gave up on a message: record its task Failed with the reason."""
        try:
            message = TaskMessage.decode(text)
        except MessageError as exc:
            log.error("a poison message could not be read: %s", exc)
            return
        if self.state.task(message.run_id, message.table) is None:
            return
        self.fail(
            message.run_id,
            message.table,
            f"step {message.seq} failed {dequeue_count} times (transient errors); the queue gave up on it",
            plan=message.kind == "plan",
        )
