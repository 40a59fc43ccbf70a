"""Starting a table's pass: its target, whether it is full, its window, and its record.

Step 0 of a run's task decides the pass. It is full when the table has no watermark, when its lookup
was just created, when its configuration (sources and lookup) changed, when the weekly full pass is
due, or when asked; otherwise incremental. The window ends at the server's time (a fresh ``Date``
header) minus the settle period, never the host's clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .checkpoints import Checkpoint, Counters, FullPassReason, full_pass_cause, start_pass, window_end
from .clock import Clock
from .dataverse import odata
from .dataverse.client import DataverseClient
from .dataverse.errors import FatalError
from .dataverse.metadata import LookupSpec, Metadata
from .link_settings import LinkSettings
from .mapping import Target
from .relink_rule import RelinkLimits
from .state import TaskRecord


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
    max_throttle_delay: float = 3600.0
    """The longest visibility delay a throttled step is re-enqueued with (a ``Retry-After`` beyond it
    is cut to it; the queue itself allows at most 7 days)."""
    max_throttled_requeues: int = 20
    """Re-enqueues of one step for throttling before its task is Failed (the next run resumes)."""
    relink: RelinkLimits = field(default_factory=RelinkLimits)
    """How many existing links a pass may change before it is held for approval."""


def manifest_hash(task: TaskRecord, lookup: LookupSpec) -> str:
    """A digest of what a table is hydrated with; when it changes, a full pass is owed."""
    data = json.dumps([sorted(task.sources), lookup.schema_name], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:32]


class PassStarter:
    """Finds a task's target table and lookup, and starts its pass."""

    def __init__(
        self, *, client: DataverseClient, metadata: Metadata, settings: EngineSettings, clock: Clock
    ):
        self.client = client
        self.metadata = metadata
        self.settings = settings
        self.clock = clock
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}

    def target(self, task: TaskRecord) -> tuple[Target, bool]:
        """The task's table facts and lookup (cached), and whether the lookup was just created."""
        sources = tuple((str(ds), str(entity)) for ds, entity in task.sources)
        known = self._targets.get((task.table, sources))
        if known is not None:
            return known, False
        if not sources:
            raise FatalError(f"the task for {task.table} names no CI-D data sources")
        table = self.metadata.table(odata.logical_name(task.table))
        lookup = self.metadata.ensure_lookup(
            task.table, self.settings.lookup, allow_create=self.settings.allow_create_lookup
        )
        target = Target(table, lookup, sources, self.metadata.supports_update_multiple(task.table))
        self._targets[(task.table, sources)] = target
        return target, lookup.created

    def window_end(self) -> datetime:
        """The end of a new pass's window: the server's time (a fresh ``Date``) minus settle.

        The client refuses a ``Date`` far ahead of the host's clock, so one bad answer cannot push the
        watermark into the future.
        """
        return window_end(self.client.server_now(max_age=0), self.settings.settle)

    def start(
        self,
        task: TaskRecord,
        checkpoint: Checkpoint,
        live: Checkpoint,
        *,
        run_id: str,
        plan: bool,
        survey: Callable[[Target], bool],
    ) -> tuple[Checkpoint, FullPassReason | None, Target, bool]:
        """The checkpoint of a new pass for ``run_id`` (``live``: the live lane's, which a plan mirrors).

        ``survey`` says whether the pass first counts its changes (the relink guard); a lookup just
        created holds no links, so such a pass never does.
        """
        target, created = self.target(task)
        now = self.clock.now()
        digest = manifest_hash(task, self.settings.lookup)
        if created:
            live = replace(live, full_pass_owed=True)
        reason = full_pass_cause(
            live, now=now, manifest_hash=digest, full_every=self.settings.full_every, forced=bool(task.full)
        )
        base = replace(checkpoint, watermark=live.watermark) if plan else live
        started = start_pass(
            base,
            run_id=run_id,
            owner=self.settings.owner,
            now=now,
            end=self.window_end(),
            full=reason is not None,
            survey=not created and survey(target),
        )
        earlier = Counters(throttled_seconds=Counters.from_dict(task.counters).throttled_seconds)
        return (
            replace(started, manifest_hash=digest, counters=started.counters + earlier),
            reason,
            target,
            created,
        )
