"""How a task ends: Successful, Failed, superseded, throttled past its cap, or given up by the queue.

One policy object, like dramatiq's retries middleware: the worker runs steps, and every way a task
leaves the happy path goes through here.

- **Throttling never poisons.** A ``Retry-After`` beyond the client's in-process limit re-enqueues the
  same step with that visibility delay (cut to ``max_throttle_delay``, and to the queue's 7-day maximum)
  and returns normally, so it does not spend a dequeue. Past ``max_throttled_requeues`` re-enqueues of
  one step, the task is Failed with the reason and the lease released: the next run resumes.
- **A lease taken over** (its pass made no progress for the lease time) closes the earlier run's task:
  Failed, "superseded by run …".
- **The poison queue** records a task Failed, except for a stale step or a task already finished (or
  held): a late copy of a message the chain has moved past must not fail a good task.
- **A held pass replaced** by an approved full pass (``--full --approve``) closes the held task Skipped.

Every end goes through ``ended``: one log record with the task's status and counts as structured fields
(``telemetry.task_end_fields``, what the alert rule queries) and the metrics sink's ``task_ended``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import replace

from .checkpoints import Checkpoint, Counters, Phase
from .clock import Clock
from .dataverse.errors import ThrottledError
from .lanes import Lane, LaneBook
from .log_context import context_logger, step_fields
from .messages import MessageError, TaskMessage
from .passes import EngineSettings
from .state import StateStore, TaskRecord
from .statuses import FINAL, SETTLED, Status
from .storage.errors import ConflictError
from .storage.queues import TaskQueue
from .telemetry import ALERT_STATUSES, NO_METRICS, REQUEUED, PassMetrics, ThrottleTally, task_end_fields

log = context_logger(__name__)
QUEUE_MAX_DELAY = 7 * 24 * 3600
"""The longest visibility delay Queue Storage accepts (seconds)."""


def requeue_delay(retry_after: float, *, ceiling: float) -> int:
    """The visibility delay for a throttled step: ``Retry-After``, at least 1 s, at most the ceiling."""
    wanted = retry_after if math.isfinite(retry_after) else ceiling
    return int(max(1, min(math.ceil(max(wanted, 0.0)), ceiling, QUEUE_MAX_DELAY)))


class Failures:
    """Ends tasks and re-enqueues throttled steps, for one storage account."""

    def __init__(
        self,
        *,
        state: StateStore,
        queue: TaskQueue,
        settings: EngineSettings,
        clock: Clock,
        metrics: PassMetrics = NO_METRICS,
    ) -> None:
        self.state = state
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.metrics = metrics

    def ended(self, record: TaskRecord, lane: str, text: str) -> None:
        """Report a task that reached its final status: its end record and its metrics.

        Failed and Held tasks are logged as errors, so they also stand out where only levels are read.
        """
        level = logging.ERROR if record.status in ALERT_STATUSES else logging.INFO
        log.log(
            level,
            "run %s table %s %s: %s",
            record.run_id,
            record.table,
            record.status,
            text,
            extra=task_end_fields(record),
        )
        self.metrics.task_ended(record, lane)

    def finish(self, message: TaskMessage, checkpoint: Checkpoint) -> None:
        """Record the task Successful with what its pass did."""
        counters = checkpoint.counters
        plan = message.kind == Lane.PLAN
        bounds = counters.bounds(plan=plan)

        def amount(name: str) -> str:
            return counters.amount(name, bounds)

        details = (
            f"{'full' if checkpoint.full else 'incremental'} pass: read {amount('rows_read')} rows, "
            f"{'would write' if plan else 'wrote'} {amount('written')}, {amount('already_correct')} already "
            f"correct, {amount('no_profile')} waiting for their profile, {amount('no_source')} without a "
            f"source row, {amount('invalid_keys')} invalid keys, {amount('stale')} stale "
            f"({amount('cleared')} cleared)"
        )
        if not bounds.exact:
            details += (
                f"; {counters.redone_steps} interrupted step(s) redone: rows written before an interruption "
                "count as already correct"
            )
        if counters.gave_up:
            details += (
                f"; {counters.gave_up} left the retry list after {self.settings.link.retry_limit} passes"
            )
        record = self.state.update_task(
            message.run_id,
            message.table,
            status=Status.SUCCESSFUL,
            ended=self.clock.now(),
            details=details,
            counters=counters.to_dict(),
        )
        self.ended(record, message.kind, details)

    def throttled(self, message: TaskMessage, exc: ThrottledError) -> bool:
        """Re-enqueue a throttled step with a delay, or fail its task past the cap; True if it failed."""
        task = self.state.task(message.run_id, message.table)
        requeues = 0
        if task is not None and task.value.requeue_seq == message.seq:
            requeues = task.value.requeues
        if requeues >= self.settings.max_throttled_requeues:
            self.fail(
                message.run_id,
                message.table,
                f"step {message.seq} was throttled {requeues} times in a row (last Retry-After "
                f"{exc.retry_after:.0f} s); giving up for now: the next run resumes where this one stopped",
                plan=message.kind == Lane.PLAN,
            )
            return True
        delay = requeue_delay(exc.retry_after, ceiling=self.settings.max_throttle_delay)
        self.queue.send(message.encode(), delay_seconds=delay)
        self._count_throttle(message, float(delay), requeues + 1)
        self.metrics.throttled(message.table, message.kind, ThrottleTally(1, float(delay)), handling=REQUEUED)
        log.warning(
            "run %s table %s step %d: throttled for %ds; re-enqueued (%d of at most %d)",
            message.run_id,
            message.table,
            message.seq,
            delay,
            requeues + 1,
            self.settings.max_throttled_requeues,
        )
        return False

    def _count_throttle(self, message: TaskMessage, seconds: float, requeues: int) -> None:
        book = LaneBook(self.state, Lane(message.kind))
        checkpoint, etag = book.load(message.table)
        extra = Counters(throttled_seconds=seconds)
        if checkpoint.run_id == message.run_id and checkpoint.seq == message.seq:
            counters = checkpoint.counters + extra
            with contextlib.suppress(ConflictError):  # only the throttled seconds would be lost
                book.save(replace(checkpoint, counters=counters), etag)
        else:  # throttled before the pass started: the task keeps the count until the start takes it over
            task = self.state.task(message.run_id, message.table)
            counters = Counters.from_dict(task.value.counters if task else None) + extra
        self.state.update_task(
            message.run_id,
            message.table,
            counters=counters.to_dict(),
            requeues=requeues,
            requeue_seq=message.seq,
        )

    def fail(self, run_id: str, table: str, reason: str, *, plan: bool = False) -> None:
        """Record a task Failed and release its table's lease (a full pass stays owed)."""
        book = LaneBook(self.state, Lane.PLAN if plan else Lane.LIVE)
        checkpoint, etag = book.load(table)
        if checkpoint.run_id == run_id and checkpoint.active:
            owed = checkpoint.full_pass_owed or checkpoint.full
            released = replace(
                checkpoint, phase=Phase.DONE, lease_owner=None, lease_renewed=None, full_pass_owed=owed
            )
            try:
                book.save(released, etag)
            except ConflictError:
                log.warning("table %s: the checkpoint moved while releasing the lease", table)
        record = self.state.update_task(
            run_id, table, status=Status.FAILED, ended=self.clock.now(), details=reason[:1000]
        )
        self.ended(record, book.lane, reason)

    def superseded(self, run_id: str, table: str, *, by: str) -> None:
        """Close the task of a run whose lapsed lease another run took over."""
        task = self.state.task(run_id, table)
        if task is None or task.value.status in FINAL:
            return
        reason = f"superseded by run {by}: this run's pass made no progress for the lease time"
        record = self.state.update_task(
            run_id, table, status=Status.FAILED, ended=self.clock.now(), details=reason
        )
        self.ended(record, task.value.kind, reason)

    def hold_replaced(self, run_id: str, table: str, *, by: str) -> None:
        """Close the held task of a run whose table an approved full pass (``--full --approve``) took."""
        task = self.state.task(run_id, table)
        if task is None or task.value.status != Status.HELD:
            return
        reason = f"replaced by run {by}, an approved full pass; this run's held pass wrote nothing"
        record = self.state.update_task(
            run_id, table, status=Status.SKIPPED, ended=self.clock.now(), details=reason
        )
        self.ended(record, task.value.kind, reason)

    def poison(self, text: str | None, dequeue_count: int) -> None:
        """The queue gave up on a message: record its task Failed, unless the message is stale."""
        try:
            message = TaskMessage.decode(text)
        except MessageError as exc:
            log.error("a poison message could not be read: %s", exc)
            return
        with step_fields(run_id=message.run_id, table=message.table, lane=message.kind):
            self._poisoned(message, dequeue_count)

    def _poisoned(self, message: TaskMessage, dequeue_count: int) -> None:
        task = self.state.task(message.run_id, message.table)
        if task is None or task.value.status in SETTLED or task.value.kind != message.kind:
            log.info(
                "ignored a poison message for %s/%s: its task is finished or unknown",
                message.run_id,
                message.table,
            )
            return
        checkpoint, _ = LaneBook(self.state, Lane(message.kind)).load(message.table)
        if checkpoint.run_id == message.run_id and checkpoint.seq != message.seq:
            log.info(
                "ignored a poison message for a stale step %d of %s/%s",
                message.seq,
                message.run_id,
                message.table,
            )
            return
        self.fail(
            message.run_id,
            message.table,
            f"step {message.seq} failed {dequeue_count} times (transient errors); the queue gave up on it",
            plan=message.kind == Lane.PLAN,
        )
