"""The relink guard's reads: whether a table has links at all, and how many (as far as the rule needs).

The rule is ``relink_rule``'s; this module asks Dataverse what it needs. Both reads select only the
table's key over the rows whose lookup is not null:

- before a live pass, one row (``$top=1``): a table without links has only first links to make, which
  are never held, so its pass is not surveyed (a first mass pass costs no extra reads);
- after a survey, pages of keys until the rule says "go" or the rows end: the count stops as soon as
  the table has enough links for the changes to be within the share, so an ordinary incremental pass
  costs one page, and only a pass that is held counts every link.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checkpoints import Checkpoint
from .dataverse.client import DataverseClient
from .mapping import Target
from .relink_rule import RelinkLimits, changes_of, hold_reason
from .state import TaskRecord

COUNT_PAGE = 5000


@dataclass(frozen=True)
class Judgement:
    """The guard's decision on a surveyed pass."""

    reason: str | None
    """Why it is held; ``None``: it goes on live."""
    links: int
    """The table's existing links counted (a lower bound when it goes: counting stopped once enough)."""


class RelinkGuard:
    """Decides, for one organization, which live passes are surveyed and which surveyed ones go."""

    def __init__(self, client: DataverseClient, limits: RelinkLimits) -> None:
        self.client = client
        self.limits = limits

    def surveys(self, task: TaskRecord, target: Target) -> bool:
        """Whether a live pass must first count its changes: the guard on, not approved, links exist."""
        if not self.limits.enabled or task.approve:
            return False
        answer = self.client.get_json(
            target.table.entity_set, kind="has_links", params={**self._linked(target), "$top": "1"}
        )
        return bool(answer.get("value"))

    def judge(self, target: Target, checkpoint: Checkpoint) -> Judgement:
        """Hold or go for a completed survey, counting the table's links only as far as needed."""
        changes = changes_of(checkpoint.counters)
        if hold_reason(changes, 0, self.limits) is None:
            return Judgement(None, 0)
        links = 0
        pages = self.client.pages(
            target.table.entity_set, params=self._linked(target), page_size=COUNT_PAGE, kind="count_links"
        )
        for rows, _ in pages:
            links += len(rows)
            if hold_reason(changes, links, self.limits) is None:
                return Judgement(None, links)
        return Judgement(hold_reason(changes, links, self.limits), links)

    @staticmethod
    def _linked(target: Target) -> dict[str, str]:
        return {"$select": target.table.primary_id, "$filter": f"{target.link_column} ne null"}
