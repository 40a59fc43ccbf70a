"""How many mapping rows a pass has left to read: the one honest basis of an ETA.

A pass's mapping phase reads the rows of its window in key order, so the rows left are those of the
window after the last key read. Dataverse counts them with ``<set>/$count?$filter=...``, one cheap
request, but counts at most 5,000 rows (``DataverseClient.count``): a count that reaches it is a lower bound
("at least 5,000"), and is recorded as such, so an ETA drawn from it says "at least". Once the mapping
phase is over, nothing is estimated: a full pass's reconcile reads the linked rows, which no cheap
request counts, and the status shows no ETA rather than a guess.

The count is asked at the start of a pass and after each step; a count that fails costs the estimate,
never the pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .checkpoints import Checkpoint, Phase
from .dataverse.client import DataverseClient
from .dataverse.errors import DataverseError
from .mapping import MAPPING_SET, Queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MappingLeft:
    """The mapping rows a pass has left to read, counted after ``rows_read`` rows were read."""

    rows: int
    at_least: bool
    """The count reached Dataverse's limit: more rows may be left."""
    rows_read: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values, stored on the task."""
        return {"rows": self.rows, "at_least": self.at_least, "rows_read": self.rows_read}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MappingLeft | None:
        """A stored estimate, or ``None`` when the task has none (or an unreadable one)."""
        if not data:
            return None
        try:
            return cls(int(data["rows"]), bool(data["at_least"]), int(data["rows_read"]))
        except (KeyError, TypeError, ValueError):
            return None


def count_mapping_left(
    client: DataverseClient, queries: Queries, checkpoint: Checkpoint
) -> MappingLeft | None:
    """Count the mapping rows the checkpoint's pass has left, or ``None`` past the mapping phase.

    ``None`` also when the count fails or its answer is not a number: the pass goes on without an ETA.
    """
    if checkpoint.phase not in (Phase.RETRY, Phase.MAPPING) or checkpoint.window_end is None:
        return None
    after = checkpoint.cursor if checkpoint.phase is Phase.MAPPING else None
    where = queries.window_filter(checkpoint.window_start, checkpoint.window_end, after)
    try:
        counted = client.count(MAPPING_SET, kind="count_mapping", where=where)
    except DataverseError as exc:
        log.info("table %s: counting the mapping rows left failed (%s); no ETA", checkpoint.table, exc)
        return None
    return MappingLeft(counted.rows, counted.at_least, rows_read=checkpoint.counters.rows_read)
