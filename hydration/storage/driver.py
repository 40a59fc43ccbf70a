"""A local stand-in for the Functions host's queue trigger, for development and end-to-end tests.

The Functions host cannot run on these machines, so this pumps a ``TaskQueue`` into the same handler
a queue trigger would call, following the host's documented semantics (``host.json`` ``extensions.queues``):

- a message is received with a lease (visibility timeout) of ``lease_seconds``;
- a body that is not valid base64 goes to the poison queue at once, without calling the handler;
- a message whose dequeue count already exceeds ``max_dequeue_count`` (left behind by a crash) goes to
  the poison queue without calling the handler;
- the handler succeeds: the message is deleted;
- the handler raises: on the ``max_dequeue_count``-th delivery the message goes to the poison queue,
  before that it is released to become visible again after ``visibility_timeout`` seconds (so the next
  delivery has a higher dequeue count).

Moving to poison sends the text to the poison queue first and deletes the original second: a crash in
between duplicates into the poison queue rather than losing the message. An undecodable body is sent to
the poison queue as the text of a well-formed message (the host copies the bytes as they are), so the
poison handler can read what arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from hydration.clock import SYSTEM_CLOCK, Clock
from hydration.storage.errors import ConflictError
from hydration.storage.queues import MAX_DELAY_SECONDS, MAX_PAYLOAD_BYTES, Received, TaskQueue

logger = logging.getLogger(__name__)

_MAX_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Delivery:
    """What the handler gets: the message id, its text and how many times it has been delivered."""

    id: str
    text: str
    dequeue_count: int


@dataclass(frozen=True)
class DrainStats:
    """What a drain did: handler successes, handler failures (each raise counts), messages poisoned."""

    processed: int = 0
    failed: int = 0
    poisoned: int = 0


class DeliveryOutcome(Enum):
    """What happened to one received message."""

    PROCESSED = "processed"
    RELEASED = "released"  # the handler raised; the message will be delivered again
    POISONED = "poisoned"  # moved to the poison queue, with or without a last failure
    FAILED_POISONED = "failed_poisoned"  # the handler raised on the last allowed delivery


class QueueDriver:
    """Pump one queue into a handler with the Functions host's retry and poison semantics."""

    def __init__(
        self,
        queue: TaskQueue,
        poison: TaskQueue,
        handler: Callable[[Delivery], None],
        *,
        max_dequeue_count: int = 5,
        visibility_timeout: int = 0,
        lease_seconds: int = 300,
        clock: Clock = SYSTEM_CLOCK,
        on_poison: Callable[[Delivery, str], None] | None = None,
    ) -> None:
        if max_dequeue_count < 1:
            raise ValueError("max_dequeue_count must be at least 1")
        if not 0 <= visibility_timeout <= MAX_DELAY_SECONDS:
            raise ValueError(f"visibility_timeout must be between 0 and {MAX_DELAY_SECONDS} seconds")
        if not 1 <= lease_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"lease_seconds must be between 1 and {MAX_DELAY_SECONDS} seconds")
        self._queue = queue
        self._poison = poison
        self._handler = handler
        self._max_dequeue_count = max_dequeue_count
        self._visibility_timeout = visibility_timeout
        self._lease_seconds = lease_seconds
        self.clock = clock
        """What the driver waits on between polls; whoever drains through it waits on the same clock."""
        self._on_poison = on_poison

    def run_once(self) -> bool:
        """Process one message if one is visible; True if it took one (whatever became of it)."""
        return self.step() is not None

    def step(self) -> DeliveryOutcome | None:
        """Process one message if one is visible and say what became of it; None if none was visible."""
        message = self._queue.receive(visibility_timeout=self._lease_seconds)
        if message is None:
            return None
        if message.text is None:
            self._move_to_poison(
                message, Delivery(message.id, message.raw, message.dequeue_count), "undecodable"
            )
            return DeliveryOutcome.POISONED
        delivery = Delivery(message.id, message.text, message.dequeue_count)
        if message.dequeue_count > self._max_dequeue_count:
            reason = f"dequeue count {message.dequeue_count} exceeds {self._max_dequeue_count}"
            self._move_to_poison(message, delivery, reason)
            return DeliveryOutcome.POISONED
        try:
            self._handler(delivery)
        except Exception as error:
            return self._failed(message, delivery, error)
        self._settle(message)
        return DeliveryOutcome.PROCESSED

    def _failed(self, message: Received, delivery: Delivery, error: Exception) -> DeliveryOutcome:
        logger.warning(
            "queue %s: message %s failed on delivery %d of %d (%s)",
            self._queue.name,
            message.id,
            message.dequeue_count,
            self._max_dequeue_count,
            type(error).__name__,
            exc_info=error,
        )
        if message.dequeue_count >= self._max_dequeue_count:
            reason = f"failed {message.dequeue_count} times, last with {type(error).__name__}"
            self._move_to_poison(message, delivery, reason)
            return DeliveryOutcome.FAILED_POISONED
        try:
            self._queue.release(message, delay_seconds=self._visibility_timeout)
        except ConflictError:
            logger.warning("queue %s: lease on message %s lost before release", self._queue.name, message.id)
        return DeliveryOutcome.RELEASED

    def _settle(self, message: Received) -> None:
        try:
            self._queue.delete(message)
        except ConflictError:
            # The lease ran out while the handler worked; another delivery will repeat an idempotent step.
            logger.warning("queue %s: lease on message %s lost before delete", self._queue.name, message.id)

    def _move_to_poison(self, message: Received, delivery: Delivery, reason: str) -> None:
        text = delivery.text
        if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:  # only an undecodable raw body can be this long
            text = text.encode("utf-8")[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="ignore")
        self._poison.send(text)
        self._settle(message)
        logger.error(
            "queue %s: message %s moved to %s after %d deliveries: %s",
            self._queue.name,
            message.id,
            self._poison.name,
            message.dequeue_count,
            reason,
        )
        if self._on_poison is not None:
            try:
                self._on_poison(delivery, reason)
            except Exception:
                logger.exception("queue %s: on_poison failed for message %s", self._queue.name, message.id)

    def drain(self, *, idle_timeout: float = 5.0, max_messages: int | None = None) -> DrainStats:
        """Process messages until the queue is empty; returns what was done.

        Stops when the queue holds no message at all (``approximate_count() == 0``), or when messages
        remain but none became visible for ``idle_timeout`` seconds (delayed further, or leased by
        another consumer), or after ``max_messages`` messages. While messages are only delayed it polls
        with a short growing sleep, so a continuation sent with a delay of a few seconds is waited for.
        """
        processed = failed = poisoned = taken = 0
        last_progress = self.clock.monotonic()
        polls = 0
        while max_messages is None or taken < max_messages:
            outcome = self.step()
            if outcome is not None:
                taken += 1
                processed += outcome is DeliveryOutcome.PROCESSED
                failed += outcome in (DeliveryOutcome.RELEASED, DeliveryOutcome.FAILED_POISONED)
                poisoned += outcome in (DeliveryOutcome.POISONED, DeliveryOutcome.FAILED_POISONED)
                last_progress, polls = self.clock.monotonic(), 0
                continue
            if self._queue.approximate_count() == 0:
                break
            if self.clock.monotonic() - last_progress >= idle_timeout:
                logger.info("queue %s: drain stops with invisible messages left", self._queue.name)
                break
            self.clock.sleep(min(0.05 * 2**polls, _MAX_POLL_SECONDS))
            polls = min(polls + 1, 8)
        return DrainStats(processed=processed, failed=failed, poisoned=poisoned)
