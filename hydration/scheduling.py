"""What is owed: the timer's decision per table, and the sweep of passes that stopped making progress.

The timer starts a run only when something is owed: a table that was never hydrated, a full pass that
is due, a retry list that is not empty, or mapping changes that have settled. A table whose pass is
running is left alone, and one whose task Failed waits ``FAILED_RETRY_AFTER``. The sweep re-enqueues
the current step of a pass whose lease lapsed without progress (a lost message chain).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .checkpoints import full_pass_reason, lease_expired, window_end
from .dataverse import odata
from .dataverse.client import DataverseClient
from .linking import MAPPING_SET, sources_filter
from .manifest import Manifest, entry_problem
from .messages import TaskMessage
from .settings import Settings
from .state import StateStore, TaskRecord
from .storage.errors import ConflictError
from .storage.queues import TaskQueue
from .worker import manifest_hash

log = logging.getLogger(__name__)
FAILED_RETRY_AFTER = timedelta(hours=1)
"""The timer retries a table whose task Failed no sooner than this (a permanent error, such as a missing
lookup column, would otherwise record a Failed run on every tick)."""


@dataclass
class Schedule:
    """Decides what the timer owes for one organization and one storage account."""

    settings: Settings
    client: DataverseClient
    state: StateStore
    queue: TaskQueue

    def owed_tables(self, manifest: Manifest, now: datetime) -> list[str]:
        """The configured tables that owe a pass now, in the manifest's order."""
        failed = self.recently_failed(now)
        for table, ended in failed.items():
            log.warning(
                "timer: %s failed at %s; the timer retries it an hour later", table, ended.isoformat()
            )
        return [t for t in manifest.tables if t not in failed and self.owed(manifest, t, now)]

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
                if self._resend_if_stuck(table, plan, now):
                    swept.append(table)
        return swept

    def _resend_if_stuck(self, table: str, plan: bool, now: datetime) -> bool:
        """Renew a lapsed lease and re-enqueue the step it stopped at; False if the pass is not stuck."""
        loaded = self.state.checkpoint(table, plan=plan)
        checkpoint = loaded.value
        if not checkpoint.active or checkpoint.run_id is None:
            return False
        if not lease_expired(checkpoint, now=now, ttl=self.settings.lease_ttl):
            return False
        try:
            self.state.save_checkpoint(replace(checkpoint, lease_renewed=now), loaded.etag, plan=plan)
        except ConflictError:
            return False  # it moved: not stuck after all
        kind = "plan" if plan else "hydrate"
        self.queue.send(TaskMessage(checkpoint.run_id, table, checkpoint.seq, kind).encode())
        log.warning(
            "sweep: run %s table %s made no progress for %s; step %d re-enqueued",
            checkpoint.run_id,
            table,
            self.settings.lease_ttl,
            checkpoint.seq,
        )
        return True

    def _checkpointed_tables(self, plan: bool) -> list[str]:
        partition = "plan" if plan else "live"
        return [key for key, _ in self.state.tables.query(self.state.checkpoints_table, partition)]
