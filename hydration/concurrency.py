"""How many writes to have in flight, and how large each bulk write is: both adapt to the server.

Dataverse's service protection is per application user: too much parallelism earns 429s, too little
leaves throughput unused. ``AdaptiveLimit`` is an AIMD controller shared by every write of a worker for
one user: it starts at the server's ``x-ms-dop-hint``, halves on a throttle, and grows by one after a
run of unthrottled writes. ``next_batch_size`` keeps one bulk request's duration near a target, so a
request's server time stays bounded (long requests risk timeouts and SQL deadlocks in bulk operations).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
