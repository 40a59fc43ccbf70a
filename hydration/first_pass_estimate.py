"""How long a first pass takes: rows ÷ (rows per second per user × users), a pure function.

The rate is measured, not guessed: the benchmark's full pass of 200,000 contacts wrote 393.2 rows/s
with one application user, 774.7 with two and 1,408.0 with four (``bench/last-run-200k.json``,
README "Benchmark"), against the emulator's model of Dataverse's service protection limits. Users
scale nearly linearly because each has its own limits. A real organization is slower when plug-ins or
flows run on every write, and a table without ``UpdateMultiple`` is written by ``$batch``, which the
benchmark did not measure: the estimate is a floor, said as such.
"""

from __future__ import annotations

import math

BENCHMARK_ROWS_PER_SECOND_PER_USER = 393.2
"""Rows written per second by one application user in the benchmark's full pass (one user)."""
BENCHMARK_SOURCE = "bench/last-run-200k.json, full pass, 1 user"


def first_pass_seconds(rows: int, users: int, rows_per_second_per_user: float) -> float:
    """Seconds to write ``rows`` rows with ``users`` application users at the given rate each."""
    if rows < 0 or users < 1 or rows_per_second_per_user <= 0:
        raise ValueError("rows must be >= 0, users >= 1 and the rate > 0")
    return rows / (rows_per_second_per_user * users)


def duration_text(seconds: float) -> str:
    """A duration for people: ``under a minute``, ``about 12 minutes``, ``about 3 h 20 min``."""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"
