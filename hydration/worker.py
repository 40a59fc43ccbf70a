"""One queue message: claim the step, run it, and send the continuation.

Delivery is at least once, so every path is idempotent:

- a message must match the task it names (its kind, run and step); one that does not is rejected;
- a message whose step the checkpoint has passed is a duplicate: if the checkpoint says the
  continuation was never sent, it is sent now, otherwise the message is dropped;
- the step is claimed with an ETag-conditional save of the checkpoint, so two copies of one message
  cannot both run it; a rerun request saved meanwhile by another run is merged, not taken for a copy;
- the checkpoint is saved before the continuation is enqueued and marked sent after, so a crash in
  between is repaired by the message's redelivery (a duplicate continuation is dropped by its claim).

What a step does is the sequencer's (``sequencer``); what a failure does is ``failures``'. A live pass
of a table with links is first surveyed, then judged by the relink guard in a step of its own
(``relink_rule``): it goes on live, or it is held, writing nothing, until an operator approves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from enum import Enum

from .checkpoints import (
    Checkpoint,
    FullPassReason,
    Phase,
    claim_step,
    end_step,
    lease_expired,
)
from .clock import SYSTEM_CLOCK, Clock
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, ThrottledError
from .dataverse.metadata import Metadata
from .decision import LinkColumns
from .estimates import count_mapping_left
from .failures import Failures
from .lanes import Lane, LaneBook
from .log_context import context_logger, step_fields
from .mapping import Queries, Target
from .messages import MessageError, TaskMessage
from .passes import EngineSettings, PassStarter
from .readers import MappingReader, PageReads, ReconcileReader, RetryReader
from .relink_guard import RelinkGuard
from .relink_rule import approve_hint, go_live, guard_view, held_elsewhere, hold
from .sequencer import Sequencer, StepLimits
from .state import StateStore, TaskRecord
from .statuses import SETTLED, Status
from .storage.errors import ConflictError
from .storage.queues import TaskQueue
from .telemetry import NO_METRICS, WAITED, PassMetrics, ThrottleTally, step_rows
from .writers import WritePool

log = context_logger(__name__)


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
    """A permanent error, or throttling past its cap: the task is recorded Failed."""
    HELD = "held"
    """The relink guard held the pass: nothing was written, it waits for approval."""
    REJECTED = "rejected"
    """The message itself is invalid, or does not match the task it names."""


def _started(reason: FullPassReason | None) -> tuple[str, str]:
    """A started pass in words for the log: its kind and why."""
    return ("full", reason.message) if reason else ("incremental", "changes only")


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
        clock: Clock = SYSTEM_CLOCK,
        write_clients: Sequence[DataverseClient] = (),
        metrics: PassMetrics = NO_METRICS,
    ) -> None:
        self.client = client
        self.state = state
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.starter = PassStarter(
            client=client, metadata=metadata or Metadata(client), settings=settings, clock=clock
        )
        self.metrics = metrics
        self.failures = Failures(state=state, queue=queue, settings=settings, clock=clock, metrics=metrics)
        self.guard = RelinkGuard(client, settings.relink)
        self.pool = WritePool.for_settings([client, *write_clients], settings.link, clock=clock)
        """One pool for the worker's life: what it learns of each user's pace carries across steps."""

    # -- entry point ------------------------------------------------------------------------

    def handle(self, text: str | None) -> Outcome:
        """Handle one message; retriable errors propagate so the queue redelivers."""
        try:
            message = TaskMessage.decode(text)
        except MessageError as exc:
            log.error("rejected a queue message: %s", exc)
            return Outcome.REJECTED
        with step_fields(run_id=message.run_id, table=message.table, lane=message.kind):
            before = self._throttle_tally()
            try:
                return self._handle_message(message)
            finally:
                waited = self._throttle_tally().since(before)
                self.metrics.throttled(message.table, message.kind, waited, handling=WAITED)

    def _throttle_tally(self) -> ThrottleTally:
        """The 429s the pool's clients waited out so far (the host runs one message at a time)."""
        return ThrottleTally.of(c.counters for c in self.pool.clients)

    def _handle_message(self, message: TaskMessage) -> Outcome:
        found = self.state.task(message.run_id, message.table)
        if found is None or found.value.kind != message.kind:
            log.error(
                "rejected a %s message for %s/%s: %s",
                message.kind,
                message.run_id,
                message.table,
                "no such task" if found is None else f"the task is a {found.value.kind} task",
            )
            return Outcome.REJECTED
        book = LaneBook(self.state, Lane(message.kind))
        try:
            return self._handle(message, found.value, book)
        except ThrottledError as exc:
            return Outcome.FAILED if self.failures.throttled(message, exc) else Outcome.THROTTLED
        except FatalError as exc:
            self.failures.fail(message.run_id, message.table, str(exc), plan=book.lane is Lane.PLAN)
            return Outcome.FAILED

    def _handle(self, message: TaskMessage, task: TaskRecord, book: LaneBook) -> Outcome:
        checkpoint, etag = book.load(message.table)
        if message.seq == 0 and checkpoint.run_id != message.run_id:
            if task.status in SETTLED:
                return Outcome.DUPLICATE
            started = self._start(message, task, book, checkpoint, etag)
            if isinstance(started, Outcome):
                return started
            checkpoint, etag = started
        elif checkpoint.run_id != message.run_id or checkpoint.seq != message.seq:
            return self._duplicate(message, book, checkpoint, etag)
        return self._step(message, task, book, checkpoint, etag)

    # -- starting a pass --------------------------------------------------------------------

    def _start(
        self, message: TaskMessage, task: TaskRecord, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> Outcome | tuple[Checkpoint, str]:
        now = self.clock.now()
        busy = self._busy(message, task, book, checkpoint, etag)
        if busy is not None:
            return busy
        lane = book.lane
        live = checkpoint if lane is Lane.LIVE else self.state.checkpoint(message.table).value
        started, reason, target, created = self.starter.start(
            task,
            checkpoint,
            live,
            run_id=message.run_id,
            plan=lane is Lane.PLAN,
            survey=lambda target: lane is Lane.LIVE and self.guard.surveys(task, target),
        )
        try:
            new_etag = book.save(started, etag)
        except ConflictError:  # another copy of this step 0 started the pass first
            return Outcome.DUPLICATE
        if checkpoint.active and checkpoint.run_id is not None:
            self.failures.superseded(checkpoint.run_id, message.table, by=message.run_id)
        left = count_mapping_left(self.client, self._queries(target), started)
        if checkpoint.phase is Phase.HELD and checkpoint.run_id is not None:
            self.failures.hold_replaced(checkpoint.run_id, message.table, by=message.run_id)
        details = reason.message if reason else "incremental pass"
        if started.survey:
            details += "; counting what it would change before writing (relink guard)"
        self.state.update_task(
            message.run_id,
            message.table,
            status=Status.RUNNING,
            started=now,
            full=reason is not None,
            details=details,
            lookup={
                "attribute": target.lookup.attribute,
                "navigation_property": target.lookup.navigation_property,
                "created": created,
            },
            phase=str(started.phase),
            estimate=left.to_dict() if left else {},
        )
        log.info("run %s table %s: %s pass started (%s)", message.run_id, message.table, *_started(reason))
        return started, new_etag

    def _busy(
        self, message: TaskMessage, task: TaskRecord, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> Outcome | None:
        """Skip the task when the table is held (unless this run is approved) or leased by another run."""
        now = self.clock.now()
        if checkpoint.phase is Phase.HELD and not task.approve:
            details = held_elsewhere(checkpoint.run_id)
        elif checkpoint.active and not lease_expired(checkpoint, now=now, ttl=self.settings.lease_ttl):
            try:
                book.save(replace(checkpoint, rerun_requested=True), etag)
            except ConflictError:
                return Outcome.DUPLICATE
            details = f"the table is being hydrated by run {checkpoint.run_id}; a rerun was requested"
        else:
            return None
        record = self.state.update_task(
            message.run_id, message.table, status=Status.SKIPPED, ended=now, details=details
        )
        self.failures.ended(record, book.lane, details)
        return Outcome.SKIPPED

    # -- duplicates -------------------------------------------------------------------------

    def _duplicate(self, message: TaskMessage, book: LaneBook, checkpoint: Checkpoint, etag: str) -> Outcome:
        if checkpoint.run_id != message.run_id or checkpoint.seq < message.seq:
            log.info("dropped a stale message %s/%s step %d", message.run_id, message.table, message.seq)
            return Outcome.DUPLICATE
        if checkpoint.active and checkpoint.sent_seq < checkpoint.seq:
            self._send_continuation(message, book, checkpoint, etag)
        elif not checkpoint.active:
            current = self.state.task(message.run_id, message.table)
            if current is not None and current.value.status == Status.RUNNING:
                self.failures.finish(message, checkpoint)
        return Outcome.DUPLICATE

    def _send_continuation(
        self, message: TaskMessage, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> None:
        self.queue.send(TaskMessage(message.run_id, message.table, checkpoint.seq, message.kind).encode())
        with contextlib.suppress(ConflictError):  # the next step already ran: the continuation did its job
            book.save(replace(checkpoint, sent_seq=checkpoint.seq), etag)

    # -- one step ---------------------------------------------------------------------------

    def _claim(self, book: LaneBook, checkpoint: Checkpoint, etag: str) -> tuple[Checkpoint, str] | None:
        """Claim the step with the ETag read, merging a rerun request saved meanwhile (a redo counts)."""
        claimed = claim_step(checkpoint, owner=self.settings.owner, now=self.clock.now())
        return book.save_decided(checkpoint, claimed, etag)

    def _step(
        self, message: TaskMessage, task: TaskRecord, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> Outcome:
        claimed = self._claim(book, checkpoint, etag)
        if claimed is None:
            return Outcome.DUPLICATE
        target, _ = self.starter.target(task)
        if claimed[0].phase is Phase.GUARD:
            return self._judge(message, target, book, *claimed)
        try:
            done = self._sequencer(target, book, survey=claimed[0].survey).run(*claimed)
        except Exception:
            self._report_committed(message, book, claimed[0])
            raise
        if done is None:
            log.warning(
                "run %s table %s step %d: another copy of the step took over; stopping this copy",
                message.run_id,
                message.table,
                message.seq,
            )
            return Outcome.DUPLICATE
        checkpoint, etag = done
        if not claimed[0].survey:  # a survey writes nothing: its counts are what the guard weighs
            self.metrics.rows(
                message.table, message.kind, step_rows(claimed[0].counters, checkpoint.counters)
            )
        left = (
            count_mapping_left(self.client, self._queries(target), checkpoint) if checkpoint.active else None
        )
        self.state.update_task(
            message.run_id,
            message.table,
            counters=checkpoint.counters.to_dict(),
            phase=str(checkpoint.phase),
            estimate=left.to_dict() if left else {},
        )
        if checkpoint.active:
            self._send_continuation(message, book, checkpoint, etag)
        else:
            self.failures.finish(message, checkpoint)
        return Outcome.DONE

    def _queries(self, target: Target) -> Queries:
        return Queries(target, self.settings.link.page_size, self.settings.link.read_chunk)

    def _judge(
        self, message: TaskMessage, target: Target, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> Outcome:
        """The guard step: a surveyed pass goes on live over the same window, or is held."""
        judgement = self.guard.judge(target, checkpoint)
        view = guard_view(checkpoint, links=judgement.links, reason=judgement.reason)
        now = self.clock.now()
        if judgement.reason is None:
            decided = end_step(go_live(checkpoint), rerun_end=None, owner=self.settings.owner, now=now)
        else:
            decided = hold(checkpoint)
        saved = book.save_decided(checkpoint, decided, etag)
        if saved is None:
            return Outcome.DUPLICATE  # another copy of this step decided first
        decided, etag = saved
        if decided.active:
            details = f"{'full' if decided.full else 'incremental'} pass; the relink guard let it go: "
            details += f"{view['relinked'] + view['cleared']:,} existing links change, within the limits"
            counters = decided.counters.to_dict()
            self.state.update_task(
                message.run_id, message.table, guard=view, counters=counters, details=details
            )
            self._send_continuation(message, book, decided, etag)
            return Outcome.DONE
        details = f"held by the relink guard: {judgement.reason}; nothing was written. "
        details += f"Approve it with {approve_hint(message.run_id)}"
        record = self.state.update_task(
            message.run_id, message.table, status=Status.HELD, details=details, guard=view
        )
        self.failures.ended(record, book.lane, details)
        return Outcome.HELD

    def _report_committed(self, message: TaskMessage, book: LaneBook, claimed: Checkpoint) -> None:
        """Report the rows of the pages a failed step committed before its error (they stay done)."""
        saved, _ = book.load(message.table)
        if saved.run_id == message.run_id and saved.seq == claimed.seq and not claimed.survey:
            self.metrics.rows(message.table, message.kind, step_rows(claimed.counters, saved.counters))

    def _sequencer(self, target: Target, book: LaneBook, *, survey: bool) -> Sequencer:
        link = self.settings.link
        reads = PageReads(self.client, self.pool, self._queries(target))
        return Sequencer(
            readers={
                Phase.RETRY: RetryReader(reads, self.state, link.page_size),
                Phase.MAPPING: MappingReader(reads),
                Phase.RECONCILE: ReconcileReader(reads, read_ahead=link.read_ahead > 0),
            },
            writer=book.lane.writer(target, self.pool, clear_stale=link.clear_stale, survey=survey),
            book=replace(book, survey=survey),
            columns=LinkColumns(target.link_column, target.lookup.partition_column),
            limits=StepLimits(
                link.step_seconds, link.step_pages, link.read_ahead, len(self.pool.clients), link.retry_limit
            ),
            clock=self.clock,
            owner=self.settings.owner,
            rerun_end=self.starter.window_end if book.lane.reruns else None,
            rerun_survey=self.settings.relink.enabled,
        )

    # -- the poison queue -------------------------------------------------------------------

    def fail(self, run_id: str, table: str, reason: str, *, plan: bool = False) -> None:
        """Record a task Failed and release its table's lease."""
        self.failures.fail(run_id, table, reason, plan=plan)

    def handle_poison(self, text: str | None, dequeue_count: int) -> None:
        """The queue gave up on a message: record its task Failed, unless the message is stale."""
        self.failures.poison(text, dequeue_count)
