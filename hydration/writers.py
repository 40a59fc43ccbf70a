"""Spreading bulk writes over the application users of a credential pool, each at its own pace.

Every application user has its own service protection budget, so a second user roughly doubles what a
worker may write. ``WritePool`` sends each chunk of writes through the least busy user that has a free
slot under its ``AdaptiveLimit``, and adapts the chunk size to keep one request's duration near a
target. The pool lives as long as the worker, so what it learns carries across steps and pages.

Writes are **submitted**, not run to completion: ``submit`` returns at once with a ``Submission`` the
caller waits on later, so a step reads its next page while the previous page's writes are in flight.
Chunks take their slots first come, first served, so an earlier page's writes land before a later
page's. Reads take a slot of the reading user too (``reading``), ahead of queued writes: a request in
flight costs execution time whatever it does, and Dataverse's execution-time limit (1,200 s per 300 s,
per user) is, by Little's law, on average four requests in flight. Capping every request, reads
included, at ``max_in_flight`` per user keeps a worker near that ceiling; each user's
``ExecutionBudget`` (the durations it measured over the last 300 s) holds a write back when sending it
would take the user past the limit, so reads borrowing a slot never tip a saturated user into a 429.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

from .clock import SYSTEM_CLOCK, Clock
from .concurrency import AdaptiveLimit, ExecutionBudget, next_batch_size
from .dataverse.client import DataverseClient
from .dataverse.errors import ThrottledError
from .link_settings import MAX_IN_FLIGHT, LinkSettings
from .log_context import in_context

T = TypeVar("T")
DEFAULT_PARALLELISM = 4


class Submission(Generic[T]):
    """The chunks of one ``submit``: wait for them, or cancel the ones not yet sent."""

    def __init__(self, futures: list[Future[set[str]]], cancelled: threading.Event) -> None:
        self._futures = futures
        self._cancelled = cancelled

    def result(self) -> set[str]:
        """Wait for every chunk, then return the ids reported failed, or raise the first chunk's error.

        Every chunk is waited for even when one failed, so nothing of this submission is still in flight
        when the caller moves on.
        """
        failed: set[str] = set()
        error: BaseException | None = None
        for future in self._futures:
            try:
                failed |= future.result()
            except BaseException as exc:  # re-raised below, once every chunk has settled
                error = error or exc
        if error is not None:
            raise error
        return failed

    def cancel(self) -> None:
        """Send no further chunk, and wait for the ones already in flight (their errors are dropped)."""
        self._cancelled.set()
        for future in self._futures:
            future.cancel()
        for future in self._futures:
            if not future.cancelled():
                with contextlib.suppress(BaseException):  # the step is abandoned; its error is raised
                    future.result()


class WritePool:
    """The clients (one per application user) that bulk writes go through."""

    @classmethod
    def for_settings(
        cls, clients: Sequence[DataverseClient], settings: LinkSettings, *, clock: Clock = SYSTEM_CLOCK
    ) -> WritePool:
        """The write pool a pass's settings describe, over one client per application user."""
        limit, window = settings.execution_limit_seconds, settings.execution_window_seconds
        return cls(
            clients,
            batch_size=settings.write_batch,
            max_batch=max(settings.write_batch, 1000),
            min_batch=min(settings.write_batch, 50),
            parallelism=settings.parallelism,
            max_in_flight=settings.max_in_flight,
            budget=None
            if limit is None
            else lambda: ExecutionBudget(limit_seconds=limit, window_seconds=window),
            clock=clock,
        )

    def __init__(
        self,
        clients: Sequence[DataverseClient],
        *,
        batch_size: int = 500,
        min_batch: int = 50,
        max_batch: int = 1000,
        target_seconds: float = 10.0,
        parallelism: int | None = None,
        max_in_flight: int | None = MAX_IN_FLIGHT,
        budget: Callable[[], ExecutionBudget] | None = ExecutionBudget,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not clients:
            raise ValueError("a write pool needs at least one client")
        self.clients = list(clients)
        self.batch_size = batch_size
        self.min_batch, self.max_batch, self.target_seconds = min_batch, max_batch, target_seconds
        self._parallelism = parallelism
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._limits: dict[int, AdaptiveLimit] = {}
        self._limits_lock = threading.Lock()
        self._lock = threading.Lock()
        self._slots = threading.Condition(self._lock)
        self._in_flight = [0] * len(self.clients)
        self._readers_waiting = [0] * len(self.clients)
        self._budgets = [budget() for _ in self.clients] if budget is not None else None
        """Each user's execution time over the service's window (``None``: not paced, only capped)."""
        self._row_seconds: list[float | None] = [None] * len(self.clients)
        """Each user's recent seconds per written row: what the next chunk is expected to take."""
        self._read_seconds: list[float | None] = [None] * len(self.clients)
        self.budget_waits = 0
        """How many writes waited for their user's execution-time budget (what tests observe of pacing)."""
        self._tickets = itertools.count()
        self._serving = 0
        self._executor: ThreadPoolExecutor | None = None

    # -- slots --------------------------------------------------------------------------------

    def limit(self, index: int) -> AdaptiveLimit:
        """The adaptive concurrency of client ``index``, started at its ``x-ms-dop-hint`` once known."""
        with self._limits_lock:
            if index not in self._limits:
                hint = self._parallelism or self.clients[index].dop_hint or DEFAULT_PARALLELISM
                maximum = self._parallelism or max(2 * hint, DEFAULT_PARALLELISM)
                if self._parallelism is None and self._max_in_flight is not None:
                    maximum = min(maximum, self._max_in_flight)
                self._limits[index] = AdaptiveLimit(min(hint, maximum), maximum=maximum)
            return self._limits[index]

    def _free(self, index: int, *, reader: bool) -> bool:
        if reader:  # a read borrows the next slot to free rather than wait for it (see ``reading``)
            return self._in_flight[index] <= self.limit(index).limit
        return self._in_flight[index] < self.limit(index).limit and self._readers_waiting[index] == 0

    def _expected(self, index: int, rows: int | None) -> float:
        """The seconds a request of user ``index`` is expected to take: a chunk of ``rows``, or a read."""
        if rows is None:
            return self._read_seconds[index] or 0.0
        per_row = self._row_seconds[index]
        return per_row * rows if per_row is not None else 0.0

    def _acquire_write(self, rows: int) -> tuple[int, int | None]:
        """Wait for this chunk's turn, a free slot and room in a user's execution-time budget.

        Returns the least busy such user's index and the budget's token for the request.
        """
        with self._slots:
            ticket = next(self._tickets)
            waited = False
            while True:
                timeout: float | None = None
                if ticket == self._serving:
                    free = [i for i in range(len(self.clients)) if self._free(i, reader=False)]
                    now = self._clock.monotonic()
                    waits = {i: self._budget_wait(i, now, rows) for i in free}
                    ready = [i for i in free if waits[i] <= 0]
                    if ready:
                        index = min(ready, key=lambda i: self._in_flight[i] / self.limit(i).limit)
                        self._in_flight[index] += 1
                        self._serving += 1
                        self.budget_waits += waited
                        self._slots.notify_all()
                        return index, self._budget_start(index, now, rows)
                    if free:  # a slot is free but its user's budget is not: wait for the window to move
                        timeout, waited = min(waits.values()), True
                self._clock.wait(self._slots, timeout)

    def _budget_wait(self, index: int, now: float, rows: int) -> float:
        if self._budgets is None:
            return 0.0
        return self._budgets[index].wait_seconds(now, self._expected(index, rows))

    def _budget_start(self, index: int, now: float, rows: int | None) -> int | None:
        if self._budgets is None:
            return None
        return self._budgets[index].start(now, self._expected(index, rows))

    def _release(self, index: int, token: int | None, rows: int | None) -> None:
        """Free a slot; the request's duration joins its user's budget and expected durations."""
        with self._slots:
            self._in_flight[index] -= 1
            if self._budgets is not None and token is not None:
                seconds = self._budgets[index].end(token, self._clock.monotonic())
                if rows is None:
                    self._read_seconds[index] = _smoothed(self._read_seconds[index], seconds)
                elif rows > 0:
                    self._row_seconds[index] = _smoothed(self._row_seconds[index], seconds / rows)
            self._slots.notify_all()

    @contextmanager
    def reading(self, index: int = 0) -> Iterator[DataverseClient]:
        """Hold a slot of user ``index`` for a read, ahead of any queued write."""
        with self._slots:
            self._readers_waiting[index] += 1
            try:
                while not self._free(index, reader=True):
                    self._slots.wait()
            finally:
                self._readers_waiting[index] -= 1
            self._in_flight[index] += 1
            token = self._budget_start(index, self._clock.monotonic(), None)
        try:
            yield self.clients[index]
        finally:
            self._release(index, token, None)

    # -- writes -------------------------------------------------------------------------------

    def chunks(self, items: Sequence[T]) -> list[Sequence[T]]:
        """``items`` cut at the current batch size."""
        size = self.batch_size
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                workers = sum(self.limit(i).maximum for i in range(len(self.clients)))
                self._executor = ThreadPoolExecutor(
                    max_workers=max(workers, 1), thread_name_prefix="hydration-write"
                )
            return self._executor

    def submit(
        self,
        items: Sequence[T],
        send: Callable[[DataverseClient, Sequence[T]], set[str]],
        *,
        stop: threading.Event | None = None,
    ) -> Submission[T]:
        """Queue ``items`` in chunks over the pool and return at once; see ``Submission``.

        ``stop``, shared by the submissions of one step, is set by the first chunk that fails: no
        chunk of that step is sent after it (the step stops at the error and is redone later).
        """
        cancelled = stop or threading.Event()
        chunks = self.chunks(items)
        if not chunks:
            return Submission([], cancelled)
        executor = self._pool()
        futures = [executor.submit(in_context(self._send_one), c, send, cancelled) for c in chunks]
        return Submission(futures, cancelled)

    def _send_one(
        self,
        chunk: Sequence[T],
        send: Callable[[DataverseClient, Sequence[T]], set[str]],
        cancelled: threading.Event,
    ) -> set[str]:
        if cancelled.is_set():
            return set()
        index, token = self._acquire_write(len(chunk))
        client, limit = self.clients[index], self.limit(index)
        sent = 0
        try:
            if cancelled.is_set():
                return set()
            sent = len(chunk)
            throttled_before = client.counters.throttled
            started = self._clock.monotonic()
            try:
                failed = send(client, chunk)
            except BaseException as exc:
                cancelled.set()  # the step stops at this error: its chunks not yet sent are not sent
                if isinstance(exc, ThrottledError):
                    limit.throttled()
                raise
            elapsed = (
                (self._clock.monotonic() - started) * self.batch_size / max(1, len(chunk))
            )  # as if a full chunk
        finally:
            self._release(index, token, sent)
        if client.counters.throttled > throttled_before:
            limit.throttled()
        else:
            limit.succeeded()
        with self._slots:
            self.batch_size = next_batch_size(
                self.batch_size,
                elapsed=elapsed,
                target=self.target_seconds,
                minimum=self.min_batch,
                maximum=self.max_batch,
            )
            self._slots.notify_all()
        return failed


def _smoothed(previous: float | None, sample: float, weight: float = 0.3) -> float:
    """An exponential moving average: recent durations count most, one outlier does not dominate."""
    return sample if previous is None else previous + weight * (sample - previous)
