"""Time as a dependency: the wall clock, a monotonic clock and sleeping, injected at the composition root.

Throttling, pacing, leases and step budgets all depend on time. Passing one ``Clock`` from the
composition root (``service``, the CLI, the tests) to the Dataverse client, the write pool, the execution
budget and the local queue driver lets a test of a 429 storm or a lapsed lease run in milliseconds on a
``FakeClock`` while the product runs on ``SystemClock``. Nothing else in the package reads the time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the engine asks of time."""

    def now(self) -> datetime:
        """The host's wall-clock time, timezone-aware UTC (leases, task times; never a pass's window)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (budgets, pacing, the server's clock between answers)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait this long (backoff, pacing, the local queue driver's polling)."""
        ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on a held condition until notified or ``timeout`` seconds have passed on this clock."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The host's time in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """``time.sleep``."""
        time.sleep(max(0.0, seconds))

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """``condition.wait``."""
        condition.wait(timeout)


class FakeClock:
    """A clock that moves only when something sleeps on it or a test advances it.

    Shipped with the package, like httpx's ``MockTransport``, so tests and tools need no patching: a
    sleep returns at once and moves both clocks on, so a scenario with minutes of backoff runs in
    milliseconds and stays deterministic. Thread-safe; the write pool sleeps on it from several threads.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._monotonic = 1000.0
        self.slept = 0.0
        """Seconds slept in all, for tests that check a wait happened."""

    def now(self) -> datetime:
        """The fake wall-clock time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        """Move the clocks on by ``seconds`` at once."""
        self.advance(max(0.0, seconds))
        with self._lock:
            self.slept += max(0.0, seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Without a timeout, wait to be notified; with one, let that much fake time pass at once.

        The condition is released for a moment all the same, so the threads it waits for can move on.
        """
        if timeout is None:
            condition.wait()
        else:
            condition.wait(0.001)
            self.sleep(timeout)

    def advance(self, seconds: float) -> None:
        """Move both clocks on (a test's way to let time pass)."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds


SYSTEM_CLOCK = SystemClock()
"""The one real clock, the default where a caller injects none."""
