"""Approving a held run: its held tables' passes go on live, exactly where the relink guard stopped them.

``python -m hydration approve RUN`` and ``POST /api/runs/{id}/approve`` come here. For each Held task of
the run, the table's live checkpoint (phase ``held``, the same run) is resumed with an ETag-conditional
save (``relink_rule.approved``: the same window, leased anew, never surveyed again), step 0 of the live
walk is enqueued, and the task is Running again.

Idempotent and safe to repeat: a second approval finds nothing held and says so (``NothingHeldError``, 409);
two at once cannot both resume a table (the ETag); an approval that stopped after saving the checkpoint
but before enqueuing is completed by the next one, which finds the task still Held and the checkpoint
already resumed, and sends the message (a duplicate message is dropped by its claim).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .checkpoints import Phase
from .messages import TaskMessage, is_run_id
from .relink_rule import approved
from .state import StateStore, TaskRecord
from .statuses import Status
from .storage.errors import ConflictError
from .storage.queues import TaskQueue


class ApprovalError(Exception):
    """An approval that cannot be done; ``status`` is the HTTP answer that says why."""

    status = 400


class UnknownRunError(ApprovalError):
    """No run has this id."""

    status = 404


class NothingHeldError(ApprovalError):
    """The run exists but has no held table (never held, approved already, or replaced)."""

    status = 409


@dataclass(frozen=True)
class Approved:
    """What an approval resumed."""

    run_id: str
    tables: tuple[str, ...]


def approve(state: StateStore, queue: TaskQueue, run_id: str, *, owner: str, now: datetime) -> Approved:
    """Resume every held table of the run live; ``ApprovalError`` when there is nothing to approve."""
    if not is_run_id(run_id):
        raise ApprovalError(f"{run_id[:60]!r} is not a run id such as 20261129T021500Z-1a2b3c4d")
    if state.run(run_id) is None:
        raise UnknownRunError(f"no run {run_id}")
    tasks = state.tasks(run_id)
    held = [t for t in tasks if t.status == Status.HELD]
    if not held:
        statuses = ", ".join(f"{t.table} {t.status}" for t in tasks) or "no tables"
        raise NothingHeldError(f"run {run_id} has no held table to approve ({statuses})")
    resumed = tuple(t.table for t in held if _resume(state, queue, t, owner=owner, now=now))
    if not resumed:
        raise NothingHeldError(f"run {run_id}: its held tables were approved or replaced meanwhile")
    return Approved(run_id, resumed)


def _resume(state: StateStore, queue: TaskQueue, task: TaskRecord, *, owner: str, now: datetime) -> bool:
    """Resume one held task's pass; False when its table has moved on (another approval, a new run)."""
    loaded = state.checkpoint(task.table)
    checkpoint = loaded.value
    if checkpoint.run_id != task.run_id:
        return False
    if checkpoint.phase is Phase.HELD:
        checkpoint = approved(checkpoint, owner=owner, now=now)
        try:
            state.save_checkpoint(checkpoint, loaded.etag)
        except ConflictError:
            return False  # another approval resumed it first
    elif not checkpoint.active:
        return False
    queue.send(TaskMessage(task.run_id, task.table, checkpoint.seq, "hydrate").encode())
    state.update_task(
        task.run_id,
        task.table,
        status=Status.RUNNING,
        details="approved: the held pass goes on live, over the same window",
    )
    return True
