"""The relink guard's rule and its moves, as pure functions: hold a pass, let it go, or resume it.

A bad unification can move most links at once, and every rewritten link fires the table's Update
plug-ins and flows. So a live pass of a table that already has links first walks its pages writing
nothing (a *survey*: ``Checkpoint.survey``), counting the rows whose existing link it would change:
overwritten with another profile (``relinked``) or cleared as stale (``cleared``, where stale links are
cleared). First links (a row without a link) and rows already correct never count. Then ``hold_reason``
decides: more than ``max_share`` of the table's existing links, or more than ``max_relinks``, and the
pass is **Held**, having written nothing; otherwise it starts again live over the same window.

Only an operator's approval resumes a held pass (``approval``), live, never surveyed again. A run
started with ``--full --approve`` is not surveyed at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from typing import Any

from .checkpoints import Checkpoint, Counters, Phase

DEFAULT_MAX_SHARE = 0.2


@dataclass(frozen=True)
class RelinkLimits:
    """How many existing links one pass may change before it waits for approval."""

    max_share: float = DEFAULT_MAX_SHARE
    """Share of the table's existing links (0 to 1; 1 turns the share rule off)."""
    max_relinks: int | None = None
    """An absolute cap on changed links; ``None``: no cap."""

    @property
    def enabled(self) -> bool:
        """Whether any pass can be held: with no rule that can hold, no survey is worth its reads."""
        return self.max_share < 1 or self.max_relinks is not None


def changes_of(counters: Counters) -> int:
    """The changes to existing links a pass counted: links overwritten and links cleared."""
    return counters.relinked + counters.cleared


def hold_reason(changes: int, links: int, limits: RelinkLimits) -> str | None:
    """Why a pass changing ``changes`` of the table's ``links`` existing links must wait; ``None``: go.

    Exactly at a limit goes; one more holds. The share is compared exactly (as a fraction), so 20 of
    100 at 0.2 is never held by a rounding error.
    """
    if changes <= 0:
        return None
    if limits.max_relinks is not None and changes > limits.max_relinks:
        return (
            f"the pass would change {changes:,} existing links, more than HYDRATION_MAX_RELINKS "
            f"({limits.max_relinks:,})"
        )
    if changes > Fraction(str(limits.max_share)) * links:
        share = changes / links if links else 1.0
        return (
            f"the pass would change {changes:,} of the table's {links:,} existing links ({share:.0%}), "
            f"more than HYDRATION_MAX_RELINK_SHARE ({limits.max_share:.0%})"
        )
    return None


def go_live(checkpoint: Checkpoint) -> Checkpoint:
    """The surveyed pass started again live: same run, window and lease, counters from zero."""
    return replace(
        checkpoint,
        phase=Phase.RETRY,
        survey=False,
        cursor=None,
        retry_cursor=None,
        counters=Counters(throttled_seconds=checkpoint.counters.throttled_seconds),
        changes=(),
    )


def hold(checkpoint: Checkpoint) -> Checkpoint:
    """The surveyed pass held: no lease, no message (the next step number is never sent until approval).

    It keeps its run, window, counts and sample, so the status shows what it would do, and the table
    keeps its watermark, so no later pass skips what this one would have written.
    """
    seq = checkpoint.seq + 1
    return replace(checkpoint, phase=Phase.HELD, seq=seq, sent_seq=seq, lease_owner=None, lease_renewed=None)


def approved(checkpoint: Checkpoint, *, owner: str, now: datetime) -> Checkpoint:
    """A held pass resumed live at its step number, leased anew; it is not surveyed again."""
    if checkpoint.phase is not Phase.HELD:
        raise ValueError(f"only a held pass can be approved, not one in phase {checkpoint.phase}")
    return replace(go_live(checkpoint), lease_owner=owner, lease_renewed=now)


def guard_view(checkpoint: Checkpoint, *, links: int, reason: str | None) -> dict[str, Any]:
    """What the task records of the guard's decision: the plan's counts and a sample of its changes.

    The sample holds row and profile ids only (GUIDs), never row contents.
    """
    counters = checkpoint.counters
    return {
        "held": reason is not None,
        "reason": reason or "",
        "relinked": counters.relinked,
        "cleared": counters.cleared,
        "links": links,
        "rowsRead": counters.rows_read,
        "toWrite": counters.written,
        "sample": [{"row": row, "from": old, "to": new} for row, old, new in checkpoint.changes],
    }


def approve_hint(run_id: str | None) -> str:
    """How an operator approves a held run (the status, the CLI and the task details all say it so)."""
    return f"python -m hydration approve {run_id}  (or POST /api/runs/{run_id}/approve)"


def held_elsewhere(run_id: str | None) -> str:
    """Why another run's task for a held table is Skipped, and what to do."""
    return (
        f"the table's pass in run {run_id} is held by the relink guard; approve it "
        f"({approve_hint(run_id)}) or start a full pass with --approve"
    )
