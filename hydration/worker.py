"""One queue message: claim the step, run it, and send the continuation.

Delivery is at least once, so every path is idempotent:

- a message must match the task it names (its kind, run and step); one that does not is rejected;
- a message whose step the checkpoint has passed is a duplicate: if the checkpoint says the
  continuation was never sent, it is sent now, otherwise the message is dropped;
- the step is claimed with an ETag-conditional save of the checkpoint, so two copies of one message
  cannot both run it; a rerun request saved meanwhile by another run is merged, not taken for a copy;
- the checkpoint is saved before the continuation is enqueued and marked sent after, so a crash in
  between is repaired by the message's redelivery (a duplicate continuation is dropped by its claim).

What a step does is the sequencer's (``sequencer``); what a failure does is ``failures``'.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from enum import Enum

from .checkpoints import Checkpoint, Phase, claim_step, lease_expired, only_rerun_asked
from .clock import SYSTEM_CLOCK, Clock
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError, ThrottledError
from .dataverse.metadata import Metadata
from .decision import LinkColumns
from .failures import Failures
from .lanes import Lane, LaneBook
from .mapping import Queries, Target
from .messages import MessageError, TaskMessage
from .passes import EngineSettings, PassStarter
from .readers import MappingReader, PageReads, ReconcileReader, RetryReader
from .sequencer import Sequencer, StepLimits
from .state import StateStore, TaskRecord
from .statuses import FINAL, Status
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
    """A permanent error, or throttling past its cap: the task is recorded Failed."""
    REJECTED = "rejected"
    """The message itself is invalid, or does not match the task it names."""


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
    ) -> None:
        self.client = client
        self.state = state
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.starter = PassStarter(
            client=client, metadata=metadata or Metadata(client), settings=settings, clock=clock
        )
        self.failures = Failures(state=state, queue=queue, settings=settings, clock=clock)
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
            if task.status in FINAL:
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
        if checkpoint.active and not lease_expired(checkpoint, now=now, ttl=self.settings.lease_ttl):
            try:
                book.save(replace(checkpoint, rerun_requested=True), etag)
            except ConflictError:
                return Outcome.DUPLICATE
            details = f"the table is being hydrated by run {checkpoint.run_id}; a rerun was requested"
            self.state.update_task(
                message.run_id, message.table, status=Status.SKIPPED, ended=now, details=details
            )
            return Outcome.SKIPPED
        lane = book.lane
        live = checkpoint if lane is Lane.LIVE else self.state.checkpoint(message.table).value
        started, reason, target, created = self.starter.start(
            task, checkpoint, live, run_id=message.run_id, plan=lane is Lane.PLAN
        )
        try:
            new_etag = book.save(started, etag)
        except ConflictError:  # another copy of this step 0 started the pass first
            return Outcome.DUPLICATE
        if checkpoint.active and checkpoint.run_id is not None:
            self.failures.superseded(checkpoint.run_id, message.table, by=message.run_id)
        self.state.update_task(
            message.run_id,
            message.table,
            status=Status.RUNNING,
            started=now,
            full=reason is not None,
            details=reason.message if reason else "incremental pass",
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
            reason.message if reason else "changes only",
        )
        return started, new_etag

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
        for _ in range(3):
            claimed = claim_step(checkpoint, owner=self.settings.owner, now=self.clock.now())
            try:
                return claimed, book.save(claimed, etag)
            except ConflictError:
                stored, stored_etag = book.load(checkpoint.table)
                if not only_rerun_asked(stored, checkpoint):
                    return None
                checkpoint, etag = stored, stored_etag
        return None

    def _step(
        self, message: TaskMessage, task: TaskRecord, book: LaneBook, checkpoint: Checkpoint, etag: str
    ) -> Outcome:
        claimed = self._claim(book, checkpoint, etag)
        if claimed is None:
            return Outcome.DUPLICATE
        target, _ = self.starter.target(task)
        done = self._sequencer(target, book).run(*claimed)
        if done is None:
            log.warning(
                "run %s table %s step %d: another copy of the step took over; stopping this copy",
                message.run_id,
                message.table,
                message.seq,
            )
            return Outcome.DUPLICATE
        checkpoint, etag = done
        self.state.update_task(message.run_id, message.table, counters=checkpoint.counters.to_dict())
        if checkpoint.active:
            self._send_continuation(message, book, checkpoint, etag)
        else:
            self.failures.finish(message, checkpoint)
        return Outcome.DONE

    def _sequencer(self, target: Target, book: LaneBook) -> Sequencer:
        link = self.settings.link
        reads = PageReads(self.client, self.pool, Queries(target, link.page_size, link.read_chunk))
        return Sequencer(
            readers={
                Phase.RETRY: RetryReader(reads, self.state, link.page_size),
                Phase.MAPPING: MappingReader(reads),
                Phase.RECONCILE: ReconcileReader(reads, read_ahead=link.read_ahead > 0),
            },
            writer=book.lane.writer(target, self.pool, clear_stale=link.clear_stale),
            book=book,
            columns=LinkColumns(target.link_column, target.lookup.partition_column),
            limits=StepLimits(
                link.step_seconds, link.step_pages, link.read_ahead, len(self.pool.clients), link.retry_limit
            ),
            clock=self.clock,
            owner=self.settings.owner,
            rerun_end=self.starter.window_end if book.lane.reruns else None,
        )

    # -- the poison queue -------------------------------------------------------------------

    def fail(self, run_id: str, table: str, reason: str, *, plan: bool = False) -> None:
        """Record a task Failed and release its table's lease."""
        self.failures.fail(run_id, table, reason, plan=plan)

    def handle_poison(self, text: str | None, dequeue_count: int) -> None:
        """The queue gave up on a message: record its task Failed, unless the message is stale."""
        self.failures.poison(text, dequeue_count)
