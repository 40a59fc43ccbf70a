"""How long to wait before retrying, as a pure function (tested without clocks)."""

from __future__ import annotations

import random


def floor(attempt: int, *, base: float = 1.0, cap: float = 30.0) -> float:
    """The least wait before retry number ``attempt``: half the exponential step, capped."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return min(cap, base * (2.0 ** min(attempt - 1, 64))) / 2


def delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 1.0,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    A server's ``Retry-After`` is honoured (Dataverse's service protection counts on it) but never
    shortens the wait below the exponential floor: a server that answers ``429 Retry-After: 0`` to every
    request would otherwise be sent every retry back to back. Without ``Retry-After``, exponential
    backoff with full jitter between the floor and the step, capped, so many workers do not retry in step.
    """
    least = floor(attempt, base=base, cap=cap)
    if retry_after is not None:
        return max(least, retry_after)
    return (rng or random).uniform(least, 2 * least)
