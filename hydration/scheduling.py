"""What is owed: the timer's decision per table, and the sweep of passes that stopped making progress.

The timer starts a run only when something is owed: a table that was never hydrated, a full pass that
is due, a retry list that is not empty, or mapping changes that have settled. A table whose pass is
running is left alone, and one whose task Failed waits ``FAILED_RETRY_AFTER``. The sweep re-enqueues
the current step of a pass whose lease lapsed without progress (a lost message chain).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from .checkpoints import Checkpoint, Phase, full_pass_reason, lease_expired, window_end
from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError
from .eligibility import EligibilityCheck
from .manifest import Manifest, entry_problem
from .mapping import MAPPING_SET, sources_filter
from .messages import TaskMessage
from .passes import manifest_hash
from .settings import Settings
from .state import StateStore, TaskRecord
from .statuses import Status
from .storage.errors import ConflictError
from .storage.queues import TaskQueue

log = logging.getLogger(__name__)
FILTER_BUDGET = 16_000
"""Characters of percent-encoded sources filter per request: half of the 32 KB URL that Dataverse
accepts (beyond it, 414), the rest left for the path and the other options. A source takes about 100
characters with short names and up to about 700 with two names of 100 characters, so 200 sources
feeding one table are asked about in groups."""
FAILED_RETRY_AFTER = timedelta(hours=1)
"""The timer retries a table whose task Failed no sooner than this (a permanent error, such as a missing
lookup column, would otherwise record a Failed run on every tick)."""


TIMER_LOOKBACK = 50
"""Runs read to find the timer's latest. Past that many runs from other triggers, a configuration problem
is recorded once more: rarely, and harmless."""


def configuration_fingerprint(settings: Settings) -> str:
    """A digest of what decides whether any run can go ahead: the organization and the manifest."""
    data = json.dumps([settings.dataverse_url, settings.manifest_text], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:32]


class Owed(StrEnum):
    """Why a table owes a pass, besides the full-pass reasons of ``checkpoints``."""

    RETRY_LIST = "rows wait on the retry list"
    MAPPING_CHANGED = "the mapping changed"


def source_groups(sources: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The sources in groups whose filter stays within ``FILTER_BUDGET`` once encoded, in order."""
    groups: list[list[tuple[str, str]]] = []
    length = 0
    for source in sources:
        size = len(quote(sources_filter([source]) + " or "))  # a little over its share of a group's
        if not groups or length + size > FILTER_BUDGET:
            groups.append([])
            length = 0
        groups[-1].append(source)
        length += size
    return groups


@dataclass
class Schedule:
    """Decides what the timer owes for one organization and one storage account."""

    settings: Settings
    client: DataverseClient
    state: StateStore
    queue: TaskQueue
    check: EligibilityCheck

    def last_timer_configuration(self) -> str | None:
        """The configuration fingerprint on the timer's latest run among the newest (None: none)."""
        for record in self.state.runs(limit=TIMER_LOOKBACK):
            if record.get("trigger") == "timer":
                value = record.get("configuration")
                return value if isinstance(value, str) else None
        return None

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
                if task.table in seen or task.status == Status.SKIPPED:
                    continue
                seen.add(task.table)
                if (
                    task.status == Status.FAILED
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
        if checkpoint.phase is Phase.HELD:
            log.info("timer: %s is held by run %s, waiting for approval", table, checkpoint.run_id)
            return None
        if checkpoint.active:
            return None
        judged = self._hydrated_with(manifest, table, sources, checkpoint)
        if judged is None:
            return None
        sources, digest = judged
        reason = full_pass_reason(
            checkpoint, now=now, manifest_hash=digest, full_every=self.settings.full_every, forced=False
        )
        if reason is not None:
            return reason
        if self.state.retry_count(table) > 0:
            return Owed.RETRY_LIST
        assert checkpoint.watermark is not None
        newest = self._newest_change(sources, checkpoint.watermark)
        if newest is None:
            return None
        settled_before = window_end(self.client.server_now(), self.settings.settle)
        if newest >= settled_before:
            log.info("timer: %s has mapping changes still settling (newest %s)", table, newest.isoformat())
            return None
        return Owed.MAPPING_CHANGED

    def _hydrated_with(
        self, manifest: Manifest, table: str, sources: list[tuple[str, str]], checkpoint: Checkpoint
    ) -> tuple[list[tuple[str, str]], str] | None:
        """The sources a run would hydrate the table from, and their digest; None if it would skip it.

        A run leaves out the sources that metadata or the sample rule out (a typo in a name, a wrong
        key), and the pass records the digest of those it was given. So when the manifest's own
        sources differ from the checkpoint's digest, the timer asks what a run would keep before it
        calls the configuration changed: otherwise a left-out source would start a run on every tick.
        """
        digest = self._digest(table, sources)
        if checkpoint.watermark is None or checkpoint.manifest_hash == digest:
            return sources, digest
        try:
            kept = self.check.verdict(manifest, [table]).eligible.get(table)
        except FatalError:
            return sources, digest  # a run records what went wrong
        if not kept:
            return None  # every source is Skipped: an explicit run says why; the timer does not repeat it
        return kept, self._digest(table, kept)

    def _digest(self, table: str, sources: Sequence[tuple[str, str]]) -> str:
        record = TaskRecord(run_id="", table=table, sources=[list(s) for s in sources])
        return manifest_hash(record, self.settings.lookup)

    def _newest_change(self, sources: Sequence[tuple[str, str]], since: datetime) -> datetime | None:
        """The newest ``modifiedon`` among the sources' mapping rows since ``since``, a group at a time."""
        newest: datetime | None = None
        for group in source_groups(sources):
            params = {
                "$select": "modifiedon",
                "$filter": f"{sources_filter(group)} and modifiedon ge {odata.moment(since)}",
                "$orderby": "modifiedon desc",
                "$top": "1",
            }
            answer = self.client.get_json(MAPPING_SET, kind="newest_change", params=params)
            rows = answer.get("value") or []
            if rows:
                moment = datetime.fromisoformat(str(rows[0]["modifiedon"]).replace("Z", "+00:00"))
                newest = moment if newest is None else max(newest, moment)
        return newest

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
