"""Service protection limits and the cost model behind them: why a client that is too fast gets 429s.

Dataverse protects itself per user over a sliding window (PA-docs api-limits): a number of requests, a
combined execution time and a number of concurrent requests. The execution-time limit is the one a
well-tuned bulk writer meets first, because every request costs server time in proportion to the rows
it reads and writes. This module models both halves:

- the **cost** of one request (``LimitsConfig.cost_seconds``): a base per request, a small base per part
  of a ``$batch``, and a price per row read and per record written. The rows come from the
  ``RequestTally`` (``request_tally``) the server opens around each top-level request and
  ``organization.Stats`` feeds as the handlers count rows, so a request knows its own rows however deep
  in a ``$batch`` they were;
- the ``Limiter``: per user, the requests admitted and the execution time charged within the window,
  the requests in flight, and the penalty that makes ``Retry-After`` grow for a user who keeps sending
  while throttled.

Model (server) time runs ``1 / time_factor`` times faster than the host clock: a cost of one
server-second delays the answer by ``time_factor`` seconds, a 300-second window lasts
``300 × time_factor`` host seconds, and ``Retry-After`` is the model wait times ``time_factor``, rounded
up to whole seconds (at least 1), because that is how long the client must really wait. Limits and costs
are stated in server seconds, as Dataverse states them. See docs/emulator-limits.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ApiError
from .request_tally import RequestTally

REQUESTS, EXECUTION_TIME, CONCURRENCY = "requests", "execution_time", "concurrency"
LIMITS = (REQUESTS, EXECUTION_TIME, CONCURRENCY)
CODES = {REQUESTS: "0x80072322", EXECUTION_TIME: "0x80072321", CONCURRENCY: "0x80072326"}
"""The documented error code of each limit (PA-docs api-limits)."""
MAX_STRIKES = 32
"""Doublings stop counting here (2**32 seconds is past any cap) so the arithmetic stays finite."""
CONCURRENCY_WAIT_SECONDS = 1.0
"""The model wait a concurrency refusal asks for: the limit fails at once and frees as soon as any
request in flight answers, so the shortest wait Dataverse can express (one second) is the honest one."""


class LimitsError(ValueError):
    """A limits setting the emulator refuses (answered 400 by the control API)."""


@dataclass(frozen=True)
class LimitsConfig:
    """The limits and the cost model; every number is in server (model) time.

    Defaults come from the public anchors in docs/emulator-limits.md: the three documented limits, and
    costs chosen so that one PATCH takes ~90 ms (one request per row: 5-15 rows/s with client latency),
    and one user writing in bulk saturates four server-seconds per second at ~440 rows/s
    (UpdateMultiple) or ~400 rows/s (``$batch`` of PATCHes), inside the 150-500 rows/s reported for tuned
    parallel bulk writers.
    """

    enabled: bool = False
    """Off by default so the emulator answers at once and never throttles unless a test asks."""
    time_factor: float = 1.0
    """Host seconds per server second: 0.01 runs the model 100 times faster."""
    window_seconds: float = 300.0
    max_requests: int = 6000
    max_execution_seconds: float = 1200.0
    max_concurrent: int = 52
    cost_base_ms: float = 80.0
    """Every top-level request: authentication, routing, plugins, the transaction around it."""
    cost_batch_part_ms: float = 1.0
    """Each request inside a ``$batch``: it shares the envelope's base."""
    cost_row_read_ms: float = 0.05
    cost_record_written_ms: float = 9.0
    cost_throttled_ms: float = 1.0
    """What refusing a request costs: small, but not free, so hammering a throttled server still counts."""
    max_retry_after_seconds: float = 300.0
    """The cap on a growing ``Retry-After`` (model seconds)."""

    def to_json(self) -> dict[str, Any]:
        """The settings as the control API answers them."""
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> LimitsConfig:
        """A copy with ``changes`` applied, after validating every name and value."""
        known = [f.name for f in fields(self)]
        for name in changes:
            if name not in known:
                raise LimitsError(f"unknown limits setting {name!r}; known: {', '.join(known)}")
        candidate = LimitsConfig(**{**asdict(self), **changes})
        candidate.validate()
        return candidate

    def validate(self) -> None:
        """Raise ``LimitsError`` naming the first bad value."""
        if not isinstance(self.enabled, bool):
            raise LimitsError("'enabled' must be true or false")
        for name in ("max_requests", "max_concurrent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LimitsError(f"{name!r} must be an integer >= 1")
        positive = ("time_factor", "window_seconds", "max_execution_seconds", "max_retry_after_seconds")
        for name in positive:
            if not _number(getattr(self, name)) or getattr(self, name) <= 0:
                raise LimitsError(f"{name!r} must be a number > 0")
        for name in ("cost_base_ms", "cost_batch_part_ms", "cost_row_read_ms", "cost_record_written_ms"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise LimitsError(f"{name!r} must be a number >= 0")
        if not _number(self.cost_throttled_ms) or self.cost_throttled_ms < 0:
            raise LimitsError("'cost_throttled_ms' must be a number >= 0")

    def cost_seconds(self, tally: RequestTally) -> float:
        """The server time one answered request took."""
        millis = (
            self.cost_base_ms
            + self.cost_batch_part_ms * tally.batch_parts
            + self.cost_row_read_ms * tally.rows_read
            + self.cost_record_written_ms * tally.rows_written
        )
        return millis / 1000

    def retry_after(self, wait_seconds: float) -> int:
        """The ``Retry-After`` header for a model wait: scaled to host time, whole seconds, at least 1."""
        return max(1, math.ceil(round(wait_seconds * self.time_factor, 6)))


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def throttle_error(limit: str, config: LimitsConfig, retry_after: int) -> ApiError:
    """The documented 429 answer for a limit, worded with the configured numbers."""
    window = _amount(config.window_seconds)
    if limit == REQUESTS:
        message = (
            f"Number of requests exceeded the limit of {config.max_requests} "
            f"over time window of {window} seconds."
        )
    elif limit == EXECUTION_TIME:
        millis = f"{round(config.max_execution_seconds * 1000):,}"
        # The documented text has two spaces before "milliseconds"; clients may compare it verbatim.
        message = (
            f"Combined execution time of incoming requests exceeded limit of {millis}  milliseconds "
            f"over time window of {window} seconds. Decrease number of concurrent requests or reduce "
            "the duration of requests and try again later."
        )
    else:
        message = f"Number of concurrent requests exceeded the limit of {config.max_concurrent}."
    return ApiError(429, CODES[limit], message, {"Retry-After": str(retry_after)})


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class _Usage:
    """One user's windows (host-clock times) and penalty."""

    admitted: deque[float] = field(default_factory=deque)
    charges: deque[tuple[float, float]] = field(default_factory=deque)
    """(when, server seconds) of each charge, oldest first."""
    charged: float = 0.0
    in_flight: int = 0
    strikes: int = 0
    """Doublings of ``Retry-After`` earned by sending while throttled."""
    last_strike: float = 0.0
    blocked_until: float = 0.0
    blocked_limit: str = REQUESTS
    honour_pending: bool = False

    def forget(self) -> None:
        """Drop the windows and the penalty (requests in flight stay in flight)."""
        self.admitted.clear()
        self.charges.clear()
        self.charged, self.strikes, self.last_strike, self.blocked_until = 0.0, 0, 0.0, 0.0
        self.honour_pending = False


@dataclass(frozen=True)
class Ticket:
    """An admitted request; ``usage`` is ``None`` when limits were off (nothing to charge or release)."""

    user: str
    usage: _Usage | None


@dataclass(frozen=True)
class Throttle:
    """A refused request: which limit, the ``Retry-After`` header, and what refusing it cost."""

    limit: str
    retry_after: int
    cost_seconds: float


class Limiter:
    """Per-user service protection limits over a sliding window, on the host clock scaled by the model."""

    def __init__(
        self, config: LimitsConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.config = config or LimitsConfig()
        self._users: dict[str, _Usage] = {}

    def configure(self, changes: dict[str, Any]) -> LimitsConfig:
        """Apply validated changes (nothing changes on error); every window and penalty starts afresh."""
        candidate = self.config.updated(changes)
        with self._lock:
            self.config = candidate
            for usage in self._users.values():
                usage.forget()
        return candidate

    def reset(self) -> None:
        """Back to the defaults (limits off), forgetting every user."""
        with self._lock:
            self.config = LimitsConfig()
            self._users = {}

    def admit(self, user: str) -> Ticket | Throttle:
        """Admit a request (it then holds a concurrency slot until ``release``) or refuse it."""
        config = self.config
        if not config.enabled:
            return Ticket(user, None)
        with self._lock:
            now = self._clock()
            usage = self._users.setdefault(user, _Usage())
            self._prune(usage, now, config)
            refusal = self._refusal(usage, now, config)
            if refusal is None:
                usage.admitted.append(now)
                usage.in_flight += 1
                return Ticket(user, usage)
            limit, retry_after = refusal
            cost = config.cost_throttled_ms / 1000
            self._charge(usage, now, cost, config)
            return Throttle(limit, retry_after, cost)

    def charge(self, ticket: Ticket, tally: RequestTally) -> float:
        """Charge an answered request's cost to its user; returns the cost in server seconds (0 if off)."""
        if ticket.usage is None:
            return 0.0
        config = self.config
        cost = config.cost_seconds(tally)
        with self._lock:
            self._charge(ticket.usage, self._clock(), cost, config)
        return cost

    def release(self, ticket: Ticket) -> None:
        """The request has answered: free its concurrency slot."""
        if ticket.usage is not None:
            with self._lock:
                ticket.usage.in_flight = max(0, ticket.usage.in_flight - 1)

    def usage(self) -> dict[str, dict[str, Any]]:
        """Each user's current window, for the control API: what is used and how close the limits are."""
        config = self.config
        with self._lock:
            now = self._clock()
            answer = {}
            for user, usage in self._users.items():
                self._prune(usage, now, config)
                answer[user] = {
                    "requests_in_window": len(usage.admitted),
                    "execution_seconds_in_window": round(usage.charged, 6),
                    "in_flight": usage.in_flight,
                    "strikes": usage.strikes,
                    "blocked_for_seconds": round(max(0.0, usage.blocked_until - now), 6),
                }
            return answer

    def _prune(self, usage: _Usage, now: float, config: LimitsConfig) -> None:
        start = now - config.window_seconds * config.time_factor
        while usage.admitted and usage.admitted[0] <= start:
            usage.admitted.popleft()
        while usage.charges and usage.charges[0][0] <= start:
            usage.charged -= usage.charges.popleft()[1]
        if not usage.charges:
            usage.charged = 0.0

    def _charge(self, usage: _Usage, now: float, cost: float, config: LimitsConfig) -> None:
        """Add a charge to the window, bounded in memory.

        Charges within a thousandth of the window share one entry, so a client that hammers while
        throttled cannot grow the window without bound; they expire up to that much early.
        """
        if cost <= 0:
            return
        if usage.charges and now - usage.charges[-1][0] < config.window_seconds * config.time_factor / 1000:
            when, earlier = usage.charges.pop()
            usage.charges.append((when, earlier + cost))
        else:
            usage.charges.append((now, cost))
        usage.charged += cost

    def _refusal(self, usage: _Usage, now: float, config: LimitsConfig) -> tuple[str, int] | None:
        """The limit a request now breaks and its ``Retry-After``, or ``None`` to admit it."""
        if now < usage.blocked_until:
            # Sent while throttled: one more doubling, at most one per model second, so the requests a
            # parallel client already had in flight when the first 429 came back are not all punished.
            if now - usage.last_strike >= config.time_factor:
                usage.strikes = min(MAX_STRIKES, usage.strikes + 1)
                usage.last_strike = now
            return usage.blocked_limit, self._block(usage, now, usage.blocked_limit, config)
        self._decay(usage, now, config)
        if usage.in_flight >= config.max_concurrent:
            return CONCURRENCY, config.retry_after(CONCURRENCY_WAIT_SECONDS)
        if len(usage.admitted) >= config.max_requests or usage.charged >= config.max_execution_seconds:
            limit = REQUESTS if len(usage.admitted) >= config.max_requests else EXECUTION_TIME
            usage.last_strike = now
            usage.honour_pending = True
            return limit, self._block(usage, now, limit, config)
        return None

    def _block(self, usage: _Usage, now: float, limit: str, config: LimitsConfig) -> int:
        """Block the user until the window frees enough, doubled per strike and capped; the header."""
        freed = self._window_wait(usage, now, limit, config) / config.time_factor
        wait = min(config.max_retry_after_seconds, max(freed, 1.0) * 2**usage.strikes)
        until = now + wait * config.time_factor
        if until > usage.blocked_until:
            usage.blocked_until, usage.blocked_limit = until, limit
        return config.retry_after((usage.blocked_until - now) / config.time_factor)

    def _window_wait(self, usage: _Usage, now: float, limit: str, config: LimitsConfig) -> float:
        """Host seconds until the window holds fewer requests, or less execution time, than the limit."""
        window = config.window_seconds * config.time_factor
        if limit == REQUESTS:
            excess = len(usage.admitted) - config.max_requests  # the oldest excess + 1 must age out
            return 0.0 if excess < 0 else usage.admitted[excess] + window - now
        remaining = usage.charged
        for when, cost in usage.charges:
            remaining -= cost
            if remaining < config.max_execution_seconds:
                return when + window - now
        return 0.0

    def _decay(self, usage: _Usage, now: float, config: LimitsConfig) -> None:
        """Forget pressure once the user stops: one doubling per honoured block, one per quiet window."""
        if usage.honour_pending:
            usage.honour_pending = False
            usage.strikes = max(0, usage.strikes - 1)
        if not usage.strikes:
            return
        window = config.window_seconds * config.time_factor
        since = max(usage.last_strike, usage.blocked_until)  # quiet by choice, not while blocked
        quiet = int((now - since) / window)
        if quiet:
            usage.strikes = max(0, usage.strikes - quiet)
            usage.last_strike = since + quiet * window
