"""The sizes and switches of a pass, as one frozen value the app's settings fill in.

Plain data, so ``settings`` can build it without importing the engine; the engine reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_IN_FLIGHT = 4
"""Requests per application user: 1,200 s of execution time per 300 s is four in flight on average."""
EXECUTION_LIMIT_SECONDS = 1200.0
"""Dataverse's documented execution-time limit per user and window."""
WINDOW_SECONDS = 300.0
"""The sliding window of that limit."""


@dataclass(frozen=True)
class LinkSettings:
    """Sizes and switches of the linking work."""

    page_size: int = 5000
    """The page size asked for (``odata.maxpagesize``): a maximum, the server may serve fewer rows."""
    read_chunk: int = 1000
    write_batch: int = 500
    parallelism: int | None = None
    """Concurrent write requests; ``None`` follows the server's ``x-ms-dop-hint``."""
    clear_stale: bool = True
    """In the reconcile, clear links whose mapping is gone (``HYDRATION_STALE_LINKS=clear``), else report."""
    step_seconds: float = 120.0
    """A step (one queue message) starts no new page after this many seconds, well inside the Functions
    timeout; it always does at least one page. The checkpoint is saved after every page all the same."""
    step_pages: int | None = None
    """At most this many pages per step (``None``: only ``step_seconds`` bounds a step)."""
    read_ahead: int = 2
    """Pages read and decided while earlier pages' writes are in flight, one more per further application
    user (0: none)."""
    max_in_flight: int | None = MAX_IN_FLIGHT
    """Requests, reads included, one application user has in flight at most (``None``: follow the
    server's ``x-ms-dop-hint``); ``parallelism``, when set, replaces it."""
    execution_limit_seconds: float | None = EXECUTION_LIMIT_SECONDS
    """The service's execution-time limit per user and window, which each user's writes are paced to
    stay under (``concurrency.ExecutionBudget``); ``None`` turns pacing off (429s still slow writes)."""
    execution_window_seconds: float = WINDOW_SECONDS
    retry_limit: int = 50
    """Passes a row stays on the retry list (its profile still missing, or its write failing) before it
    leaves it, counted as given up; the weekly full pass decides it anew, so it is never lost."""
