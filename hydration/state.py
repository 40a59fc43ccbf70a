"""Runs, tasks, checkpoints and retry lists in Azure Table Storage, with ETag concurrency.

This module only loads and saves; the rules live in ``checkpoints`` (pure) and ``worker``. Every save
of a checkpoint names the ETag it read, so two workers can never both move a table forward.

Tables, with the default prefix ``hydration``:

- ``hydrationruns``: PK ``run``, RK inverted start time + id (newest first);
- ``hydrationtasks``: PK run id, RK table;
- ``hydrationcheckpoints``: PK ``live`` or ``plan``, RK table;
- ``hydrationretries``: PK table, RK source row id.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .checkpoints import Checkpoint, Counters, Phase
from .statuses import Status
from .storage.errors import ConflictError
from .storage.tables import StateTables

_MAX_TIME = 99_999_999_999


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: UTC start time, its milliseconds (3 hex digits), 36 random bits."""
    moment = now.astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{moment.microsecond // 1000:03x}{secrets.token_hex(5)[:9]}"


def run_row_key(run_id: str) -> str:
    """Row key that lists runs newest first (inverted start time to the millisecond), then the id."""
    started = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    millis = min(int(run_id[17:20], 16), 999)
    return f"{_MAX_TIME - int(started.timestamp()):011d}{999 - millis:03d}-{run_id}"


@dataclass(frozen=True)
class TaskRecord:
    """One table's task within a run."""

    run_id: str
    table: str
    status: str = Status.QUEUED
    details: str = ""
    kind: str = "hydrate"
    sources: list[list[str]] = field(default_factory=list)
    full: bool | None = None
    started: datetime | None = None
    ended: datetime | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    lookup: dict[str, Any] = field(default_factory=dict)
    requeues: int = 0
    """Re-enqueues for throttling of step ``requeue_seq`` (the cap is per step)."""
    requeue_seq: int = -1
    phase: str = ""
    """Where the pass stood after its last step (``checkpoints.Phase``), for the status."""
    estimate: dict[str, Any] = field(default_factory=dict)
    """The mapping rows left after its last step (``estimates.MappingLeft``), the basis of an ETA."""
    approve: bool | None = None
    """The run was started approved (``--full --approve``): its pass is never held by the relink guard."""
    guard: dict[str, Any] = field(default_factory=dict)
    """What the relink guard counted before the pass went live or was held (``relink_guard``)."""

    def to_entity(self) -> dict[str, Any]:
        """Storage properties."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("run_id", "table")}

    @classmethod
    def from_entity(cls, run_id: str, table: str, entity: dict[str, Any]) -> TaskRecord:
        """Read a stored task (missing properties take their defaults)."""
        known = {f.name for f in fields(cls)} - {"run_id", "table"}
        values = {k: v for k, v in entity.items() if k in known and v is not None}
        return cls(run_id=run_id, table=table, **values)


T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A loaded record and the ETag to save it against."""

    value: T
    etag: str


def _checkpoint_entity(checkpoint: Checkpoint) -> dict[str, Any]:
    values = {
        f.name: getattr(checkpoint, f.name) for f in fields(checkpoint) if f.name not in ("table", "counters")
    }
    values["counters"] = checkpoint.counters.to_dict()
    values["phase"] = str(checkpoint.phase)
    values["changes"] = [list(change) for change in checkpoint.changes]
    return values


def _checkpoint(table: str, entity: dict[str, Any]) -> Checkpoint:
    known = {f.name for f in fields(Checkpoint)} - {"table", "counters", "changes"}
    values = {k: v for k, v in entity.items() if k in known and v is not None}
    values["phase"] = Phase.parse(values.get("phase", Phase.DONE))
    changes = tuple(
        (str(c[0]), str(c[1]), None if c[2] is None else str(c[2])) for c in entity.get("changes") or ()
    )
    return Checkpoint(
        table=table, counters=Counters.from_dict(entity.get("counters")), changes=changes, **values
    )


class StateStore:
    """Typed access to the hydration state over a ``StateTables`` adapter (Azure or in-memory)."""

    def __init__(self, tables: StateTables, *, prefix: str = "hydration") -> None:
        if not prefix.isalnum() or not prefix[:1].isalpha() or len(prefix) > 40:
            raise ValueError(
                f"the state table prefix {prefix!r} must be letters and digits, starting with a letter"
            )
        self.tables = tables
        self.runs_table = f"{prefix}runs"
        self.tasks_table = f"{prefix}tasks"
        self.checkpoints_table = f"{prefix}checkpoints"
        self.retries_table = f"{prefix}retries"

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, table: str, *, plan: bool = False) -> Versioned[Checkpoint]:
        """Load a table's checkpoint, creating an empty one the first time (idempotently)."""
        partition = "plan" if plan else "live"
        found = self.tables.get(self.checkpoints_table, partition, table)
        if found is None:
            with contextlib.suppress(ConflictError):
                self.tables.insert(
                    self.checkpoints_table, partition, table, _checkpoint_entity(Checkpoint(table=table))
                )
            found = self.tables.get(self.checkpoints_table, partition, table)
            if found is None:
                raise ConflictError(f"the checkpoint of {table} vanished while being created")
        return Versioned(_checkpoint(table, found.entity), found.etag)

    def save_checkpoint(self, checkpoint: Checkpoint, etag: str, *, plan: bool = False) -> str:
        """Save against the ETag read; ``ConflictError`` if anyone saved in between."""
        partition = "plan" if plan else "live"
        return self.tables.replace(
            self.checkpoints_table, partition, checkpoint.table, _checkpoint_entity(checkpoint), etag
        )

    # -- runs and tasks ---------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        *,
        trigger: str,
        started: datetime,
        details: str = "",
        status: str = Status.RUNNING,
        ended: datetime | None = None,
    ) -> None:
        """Record a new run (idempotent for the same id); a run closed at once has its final status."""
        entity = {
            "run_id": run_id,
            "trigger": trigger,
            "started": started,
            "status": status,
            "details": details,
            "ended": ended,
        }
        with contextlib.suppress(ConflictError):
            self.tables.insert(self.runs_table, "run", run_row_key(run_id), entity)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's record."""
        found = self.tables.get(self.runs_table, "run", run_row_key(run_id))
        return None if found is None else found.entity

    def update_run(self, run_id: str, **changes: Any) -> None:
        """Change a run's record (last writer wins: a run's fields are derived from its tasks)."""
        current = self.run(run_id) or {"run_id": run_id}
        self.tables.upsert(self.runs_table, "run", run_row_key(run_id), {**current, **changes})

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first."""
        found = []
        for _key, value in self.tables.query(self.runs_table, "run"):
            found.append(value.entity)
            if len(found) >= limit:
                break
        return found

    def put_task(self, task: TaskRecord) -> None:
        """Create or overwrite a task (the planner's write)."""
        self.tables.upsert(self.tasks_table, task.run_id, task.table, task.to_entity())

    def task(self, run_id: str, table: str) -> Versioned[TaskRecord] | None:
        """A task with its ETag."""
        found = self.tables.get(self.tasks_table, run_id, table)
        return (
            None
            if found is None
            else Versioned(TaskRecord.from_entity(run_id, table, found.entity), found.etag)
        )

    def update_task(self, run_id: str, table: str, **changes: Any) -> TaskRecord:
        """Change a task, retrying on a concurrent change (tasks are small and changes idempotent)."""
        for _ in range(10):
            current = self.task(run_id, table)
            if current is None:
                record = replace(TaskRecord(run_id=run_id, table=table), **changes)
                try:
                    self.tables.insert(self.tasks_table, run_id, table, record.to_entity())
                    return record
                except ConflictError:
                    continue
            record = replace(current.value, **changes)
            try:
                self.tables.replace(self.tasks_table, run_id, table, record.to_entity(), current.etag)
                return record
            except ConflictError:
                continue
        raise ConflictError(f"the task {run_id}/{table} keeps changing; giving up this update")

    def tasks(self, run_id: str) -> list[TaskRecord]:
        """Every task of a run."""
        return [
            TaskRecord.from_entity(run_id, key, v.entity)
            for key, v in self.tables.query(self.tasks_table, run_id)
        ]

    # -- retry list -------------------------------------------------------------------------

    def retry_entries(self, table: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` retry-list entries of a table with row keys after ``after``.

        A key-ranged read that stops at ``limit``: a page costs what it returns, not a scan of the
        list from its start. Ask for one more than a page to learn whether more follow.
        """
        found: list[tuple[str, dict[str, Any]]] = []
        for key, value in self.tables.query(self.retries_table, table, after=after):
            found.append((key, value.entity))
            if len(found) >= limit:
                break
        return found

    def add_retry(
        self,
        table: str,
        source_id: str,
        *,
        reason: str,
        profile: str | None,
        now: datetime,
        attempts: int = 1,
    ) -> None:
        """Put a source row on the retry list (idempotent: the newest reason and attempt win)."""
        entity = {"reason": reason, "profile": profile, "since": now, "attempts": attempts}
        self.tables.upsert(self.retries_table, table, source_id, entity)

    def remove_retry(self, table: str, source_id: str) -> None:
        """Take a source row off the retry list (missing is fine)."""
        self.tables.delete(self.retries_table, table, source_id)

    def retry_count(self, table: str) -> int:
        """How many rows wait on a table's retry list."""
        return sum(1 for _ in self.tables.query(self.retries_table, table))
