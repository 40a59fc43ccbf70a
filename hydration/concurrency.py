"""How many writes to have in flight, and how large each bulk write is: both adapt to the server.

Dataverse's service protection is per application user: too much parallelism earns 429s, too little
leaves throughput unused. ``AdaptiveLimit`` is an AIMD controller shared by every write of a worker for
one user: it starts at the server's ``x-ms-dop-hint``, halves on a throttle, and grows by one after a
run of unthrottled writes. ``next_batch_size`` keeps one bulk request's duration near a target, so a
request's server time stays bounded (long requests risk timeouts and SQL deadlocks in bulk operations).
``ExecutionBudget`` keeps one user's own tally of execution time under Dataverse's sliding-window limit,
so a worker that keeps its writes busy slows down just before the limit instead of earning a 429.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from .link_settings import EXECUTION_LIMIT_SECONDS, WINDOW_SECONDS

BUDGET_SHARE = 0.98
"""The share of that limit a worker allows itself: the rest is for requests it does not see (planner,
metadata, another worker with the same user) and for the difference between its clock and the server's."""


class AdaptiveLimit:
    """A concurrency limit that halves on throttling and creeps back up while unthrottled."""

    def __init__(self, initial: int, *, maximum: int, minimum: int = 1, increase_after: int = 8) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self._limit = max(minimum, min(initial, maximum))
        self.minimum, self.maximum, self.increase_after = minimum, maximum, increase_after
        self._in_flight = 0
        self._successes = 0
        self._condition = threading.Condition()

    @property
    def limit(self) -> int:
        """The current number of writes allowed in flight."""
        with self._condition:
            return self._limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one write slot (blocks while the limit is reached)."""
        with self._condition:
            while self._in_flight >= self._limit:
                self._condition.wait()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()

    def throttled(self) -> None:
        """The server pushed back: halve the limit (never below the minimum)."""
        with self._condition:
            self._limit = max(self.minimum, self._limit // 2)
            self._successes = 0

    def succeeded(self) -> None:
        """A write went through unthrottled: after enough of them, allow one more in flight."""
        with self._condition:
            self._successes += 1
            if self._successes >= self.increase_after and self._limit < self.maximum:
                self._limit += 1
                self._successes = 0
                self._condition.notify_all()


def next_batch_size(current: int, *, elapsed: float, target: float, minimum: int, maximum: int) -> int:
    """The next bulk size: shrink when a request took longer than ``target`` seconds, grow when far below.

    Proportional to how far off the request was, damped to halving or +50 % per step.
    """
    if elapsed <= 0:
        return current
    if elapsed > target:
        proposed = max(current // 2, int(current * target / elapsed))
    elif elapsed < target / 2:
        proposed = min(int(current * 1.5) + 1, int(current * target / elapsed))
    else:
        proposed = current
    return max(minimum, min(maximum, proposed))


class ExecutionBudget:
    """One application user's execution time over the last window, as the client measures it.

    Dataverse charges each request's execution time to its user over a sliding window and refuses
    requests (429, ``Retry-After``) while the window holds more than the limit. A request's duration as
    the client sees it (sent to answered) is at least what the server charged, so a client that keeps
    its own durations under the limit never meets it. Before a write is sent, ``wait_seconds`` counts
    every duration that ended within the window, every request still in flight at its expected
    duration (at least as long as it has run so far), and the new request's expected duration; the
    write waits until that fits in ``share`` of the limit. Counting requests in flight as if they ended
    now keeps a margin of about one request per slot, so a steady writer settles a few per cent under
    the limit rather than on it.

    Not thread-safe on its own: the write pool calls it under its lock, with its clock.
    """

    def __init__(
        self,
        *,
        limit_seconds: float = EXECUTION_LIMIT_SECONDS,
        window_seconds: float = WINDOW_SECONDS,
        share: float = BUDGET_SHARE,
    ) -> None:
        if limit_seconds <= 0 or window_seconds <= 0 or not 0 < share <= 1:
            raise ValueError("need a positive limit and window and 0 < share <= 1")
        self.budget = limit_seconds * share
        self.window = window_seconds
        self._ended: deque[tuple[float, float]] = deque()
        """``(ended at, seconds)`` of the requests that answered within the window, oldest first."""
        self._ended_total = 0.0
        self._in_flight: dict[int, tuple[float, float]] = {}
        """Requests in flight: token → ``(started at, expected seconds)``."""
        self._tokens = itertools.count()

    def _prune(self, now: float) -> None:
        while self._ended and self._ended[0][0] <= now - self.window:
            self._ended_total -= self._ended.popleft()[1]
        if not self._ended:
            self._ended_total = 0.0

    def used(self, now: float) -> float:
        """Seconds charged within the window plus the requests in flight at their expected durations."""
        self._prune(now)
        flying = sum(max(expected, now - started) for started, expected in self._in_flight.values())
        return self._ended_total + flying

    def wait_seconds(self, now: float, expected: float) -> float:
        """0 when a request expected to take ``expected`` seconds fits now; else how long until it may.

        A request that could never fit (longer than the budget) is let through once nothing else is
        counted, so the budget slows a worker down but never stops it.
        """
        excess = self.used(now) + expected - self.budget
        if excess <= 0 or (not self._in_flight and not self._ended):
            return 0.0
        freed = 0.0
        for ended, seconds in self._ended:
            freed += seconds
            if freed >= excess:
                return max(ended + self.window - now, 1e-3)
        # Only requests in flight can free enough: wait for one to answer (the pool wakes on each answer).
        return self.window

    def start(self, now: float, expected: float) -> int:
        """Count a request sent now; the token goes back to ``end``."""
        token = next(self._tokens)
        self._in_flight[token] = (now, max(0.0, expected))
        return token

    def end(self, token: int, now: float) -> float:
        """The request answered: its measured duration joins the window. Returns the duration."""
        started, _ = self._in_flight.pop(token)
        seconds = max(0.0, now - started)
        self._ended.append((now, seconds))
        self._ended_total += seconds
        self._prune(now)
        return seconds
