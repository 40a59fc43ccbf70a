"""How long to wait before retrying, as a pure function (tested without clocks)."""

from __future__ import annotations

import random


def delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 1.0,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    A server's ``Retry-After`` is honoured exactly (Dataverse's service protection counts on it);
    otherwise exponential backoff with full jitter, capped, so many workers do not retry in step.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if retry_after is not None:
        return max(0.0, retry_after)
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)
