"""Spreading bulk writes over the application users of a credential pool, each at its own pace.

Every application user has its own service protection budget, so a second user roughly doubles what a
worker may write. ``WritePool`` hands each chunk of writes to a user in turn, holds a slot of that
user's ``AdaptiveLimit`` while the request is in flight, and adapts the chunk size to keep one request's
duration near a target. The pool lives as long as the worker, so what it learns carries across steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .concurrency import AdaptiveLimit, next_batch_size
from .dataverse.client import DataverseClient
from .dataverse.errors import ThrottledError

T = TypeVar("T")
DEFAULT_PARALLELISM = 4


class WritePool:
    """The clients (one per application user) that bulk writes go through."""

    def __init__(
        self,
        clients: Sequence[DataverseClient],
        *,
        batch_size: int = 500,
        min_batch: int = 50,
        max_batch: int = 1000,
        target_seconds: float = 10.0,
        parallelism: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not clients:
            raise ValueError("a write pool needs at least one client")
        self.clients = list(clients)
        self.batch_size = batch_size
        self.min_batch, self.max_batch, self.target_seconds = min_batch, max_batch, target_seconds
        self._parallelism = parallelism
        self._clock = clock
        self._limits: dict[int, AdaptiveLimit] = {}
        self._lock = threading.Lock()
        self._turn = 0

    def limit(self, index: int) -> AdaptiveLimit:
        """The adaptive concurrency of client ``index``, started at its ``x-ms-dop-hint`` once known."""
        with self._lock:
            if index not in self._limits:
                hint = self._parallelism or self.clients[index].dop_hint or DEFAULT_PARALLELISM
                maximum = self._parallelism or max(2 * hint, DEFAULT_PARALLELISM)
                self._limits[index] = AdaptiveLimit(hint, maximum=maximum)
            return self._limits[index]

    def chunks(self, items: Sequence[T]) -> list[Sequence[T]]:
        """``items`` cut at the current batch size."""
        size = self.batch_size
        return [items[i : i + size] for i in range(0, len(items), size)]

    def run(self, items: Sequence[T], send: Callable[[DataverseClient, Sequence[T]], set[str]]) -> set[str]:
        """Send ``items`` in chunks over the pool; return what ``send`` reports as failed."""
        chunks = self.chunks(items)
        if not chunks:
            return set()
        workers = sum(self.limit(i).maximum for i in range(len(self.clients)))
        if len(chunks) == 1 or workers == 1:
            return set().union(*(self._send_one(c, send) for c in chunks))
        with ThreadPoolExecutor(
            max_workers=min(workers, len(chunks)), thread_name_prefix="hydration-write"
        ) as pool:
            return set().union(*pool.map(lambda c: self._send_one(c, send), chunks))

    def _send_one(
        self, chunk: Sequence[T], send: Callable[[DataverseClient, Sequence[T]], set[str]]
    ) -> set[str]:
        with self._lock:
            index = self._turn % len(self.clients)
            self._turn += 1
        client, limit = self.clients[index], self.limit(index)
        with limit.slot():
            throttled_before = client.counters.throttled
            started = self._clock()
            try:
                failed = send(client, chunk)
            except ThrottledError:
                limit.throttled()
                raise
            elapsed = (self._clock() - started) * self.batch_size / max(1, len(chunk))  # as if a full chunk
        if client.counters.throttled > throttled_before:
            limit.throttled()
        else:
            limit.succeeded()
        with self._lock:
            self.batch_size = next_batch_size(
                self.batch_size,
                elapsed=elapsed,
                target=self.target_seconds,
                minimum=self.min_batch,
                maximum=self.max_batch,
            )
        return failed
