"""Live or dry run, chosen once: the lane a task's messages run in.

A dry run (``plan``) reads and decides exactly as a live pass does and writes nothing. The difference
is settled here, once, from the task's kind: which checkpoint partition its steps move (``live`` or
``plan``, so a dry run never disturbs the live pass), which writer its decisions go to (``LiveWriter``
or ``DryRunWriter``), whether its pages touch the retry list, and whether a rerun request restarts it.
A live pass's survey (the relink guard's first walk) moves the live checkpoint but writes as a dry run.
Nothing below the worker asks which lane it is in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from .checkpoints import Checkpoint, only_rerun_asked
from .link_writes import DryRunWriter, Landed, LinkWriter, LiveWriter, SurveyWriter
from .mapping import Target
from .state import StateStore
from .storage.errors import ConflictError
from .writers import WritePool


class Lane(StrEnum):
    """Where a task's steps go; the value is the message kind and the task's kind."""

    LIVE = "hydrate"
    PLAN = "plan"

    @property
    def reruns(self) -> bool:
        """Whether a rerun asked for during a pass starts another pass when it ends (live only)."""
        return self is Lane.LIVE

    def writer(self, target: Target, pool: WritePool, *, clear_stale: bool, survey: bool) -> LinkWriter:
        """The writer of the lane's decisions (a live pass's survey writes nothing, as a dry run)."""
        if self is Lane.PLAN:
            return DryRunWriter(clear_stale=clear_stale)
        if survey:
            return SurveyWriter(clear_stale=clear_stale)
        return LiveWriter(target, pool, clear_stale=clear_stale)


@dataclass(frozen=True)
class LaneBook:
    """A lane's checkpoints and retry list over the state store."""

    state: StateStore
    lane: Lane
    survey: bool = False
    """The step surveys a live pass (``relink_rule``): like a dry run, it leaves the retry list alone."""

    @property
    def _plan(self) -> bool:
        return self.lane is Lane.PLAN

    def load(self, table: str) -> tuple[Checkpoint, str]:
        """The table's checkpoint in this lane, and its ETag."""
        loaded = self.state.checkpoint(table, plan=self._plan)
        return loaded.value, loaded.etag

    def save(self, checkpoint: Checkpoint, etag: str) -> str:
        """Save against the ETag; ``ConflictError`` if it changed."""
        return self.state.save_checkpoint(checkpoint, etag, plan=self._plan)

    def save_decided(
        self, claimed: Checkpoint, decided: Checkpoint, etag: str
    ) -> tuple[Checkpoint, str] | None:
        """Save a step's decision against the claim's ETag, merging a rerun request saved meanwhile.

        None when another copy of the step saved first (anything but a rerun request changed).
        """
        for _ in range(3):
            try:
                return decided, self.save(decided, etag)
            except ConflictError:
                stored, etag = self.load(claimed.table)
                if not only_rerun_asked(stored, claimed):
                    return None
                claimed, decided = stored, replace(decided, rerun_requested=True)
        return None

    def record(self, table: str, landed: Landed, *, resolve: bool, now: datetime) -> None:
        """A live page's retries go on the retry list and its resolved rows leave it (not a survey's)."""
        if self._plan or self.survey:
            return
        for source_id, (reason, profile) in landed.retries.items():
            attempts = landed.attempts.get(source_id, 1)
            self.state.add_retry(table, source_id, reason=reason, profile=profile, now=now, attempts=attempts)
        if resolve:
            for source_id in landed.resolved:
                self.state.remove_retry(table, source_id)
