"""The local queue driver follows the Functions host's trigger semantics, on the fake and on Azurite."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from hydration.storage import Delivery, DeliveryOutcome, DrainStats, MemoryTaskQueue, QueueDriver
from hydration.storage.queues import TaskQueue
from tests.storage.conftest import ManualClock, QueuesEnv


class DriverClock:
    """The driver's clock over a test's monotonic clock and sleep (the memory queue's fake, or real time)."""

    def __init__(self, sleep: Callable[[float], None], monotonic: Callable[[], float]) -> None:
        self._sleep, self._monotonic = sleep, monotonic

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._monotonic(), UTC)

    def monotonic(self) -> float:
        return self._monotonic()

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class Recorder:
    """A handler that records deliveries and fails the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.deliveries: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if len(self.deliveries) <= self.failures:
            raise RuntimeError("handler failed")


def make_driver(
    queues: QueuesEnv, handler: Recorder, **kwargs: object
) -> tuple[QueueDriver, TaskQueue, TaskQueue, list[tuple[Delivery, str]]]:
    queue, poison = queues.make(), queues.make()
    poisoned: list[tuple[Delivery, str]] = []
    driver = QueueDriver(
        queue,
        poison,
        handler,
        clock=DriverClock(queues.sleep, queues.clock),
        on_poison=lambda delivery, reason: poisoned.append((delivery, reason)),
        **kwargs,  # type: ignore[arg-type]
    )
    return driver, queue, poison, poisoned


def test_success_deletes_the_message(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, poison, poisoned = make_driver(queues, handler)
    assert driver.run_once() is False
    queue.send("task one")
    assert driver.run_once() is True
    assert [(d.text, d.dequeue_count) for d in handler.deliveries] == [("task one", 1)]
    assert queue.approximate_count() == 0
    assert poison.approximate_count() == 0
    assert poisoned == []


def test_a_failing_handler_is_retried_then_poisoned_after_five_deliveries(
    queues: QueuesEnv, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(failures=10**6)
    driver, queue, poison, poisoned = make_driver(queues, handler)
    queue.send("secret row contents")
    with caplog.at_level(logging.WARNING, logger="hydration.storage.driver"):
        stats = driver.drain(idle_timeout=2)
    assert stats == DrainStats(processed=0, failed=5, poisoned=1)
    assert [d.dequeue_count for d in handler.deliveries] == [1, 2, 3, 4, 5]
    assert queue.approximate_count() == 0
    moved = poison.receive(visibility_timeout=30)
    assert moved is not None
    assert moved.text == "secret row contents"
    assert len(poisoned) == 1
    delivery, reason = poisoned[0]
    assert delivery.text == "secret row contents"
    assert delivery.dequeue_count == 5
    assert "RuntimeError" in reason
    assert "secret" not in caplog.text  # ids and counts only
    assert handler.deliveries[0].id in caplog.text


def test_a_flaky_handler_succeeds_on_a_later_delivery(queues: QueuesEnv) -> None:
    handler = Recorder(failures=2)
    driver, queue, poison, poisoned = make_driver(queues, handler)
    queue.send("flaky")
    assert driver.drain(idle_timeout=2) == DrainStats(processed=1, failed=2, poisoned=0)
    assert [d.dequeue_count for d in handler.deliveries] == [1, 2, 3]
    assert queue.approximate_count() == 0
    assert poison.approximate_count() == 0
    assert poisoned == []


def test_max_dequeue_count_is_configurable(queues: QueuesEnv) -> None:
    handler = Recorder(failures=10**6)
    driver, queue, poison, _ = make_driver(queues, handler, max_dequeue_count=2)
    queue.send("x")
    assert driver.drain(idle_timeout=2) == DrainStats(processed=0, failed=2, poisoned=1)
    assert len(handler.deliveries) == 2
    assert poison.approximate_count() == 1


def test_an_undecodable_message_goes_to_poison_without_calling_the_handler(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, poison, poisoned = make_driver(queues, handler)
    queues.send_raw(queue, "not base64 at all!")
    assert driver.step() is DeliveryOutcome.POISONED
    assert handler.deliveries == []
    assert queue.approximate_count() == 0
    moved = poison.receive(visibility_timeout=30)
    assert moved is not None
    assert moved.text == "not base64 at all!"
    assert [(d.text, reason) for d, reason in poisoned] == [("not base64 at all!", "undecodable")]


def test_a_message_over_the_dequeue_limit_is_poisoned_without_calling_the_handler(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, poison, poisoned = make_driver(queues, handler, max_dequeue_count=1)
    queue.send("left behind by a crash")
    crashed = queue.receive(visibility_timeout=30)
    assert crashed is not None
    queue.release(crashed)
    assert driver.step() is DeliveryOutcome.POISONED
    assert handler.deliveries == []
    assert poison.approximate_count() == 1
    assert "exceeds" in poisoned[0][1]


def test_a_failed_message_waits_visibility_timeout_before_redelivery(queues: QueuesEnv) -> None:
    handler = Recorder(failures=1)
    driver, queue, _, _ = make_driver(queues, handler, visibility_timeout=1)
    queue.send("retry later")
    assert driver.step() is DeliveryOutcome.RELEASED
    assert driver.step() is None
    queues.advance(1)
    assert driver.step() is DeliveryOutcome.PROCESSED
    assert [d.dequeue_count for d in handler.deliveries] == [1, 2]


def test_drain_stops_at_once_when_the_queue_is_empty(queues: QueuesEnv) -> None:
    driver, _, _, _ = make_driver(queues, Recorder())
    start = queues.clock()
    assert driver.drain(idle_timeout=30) == DrainStats()
    assert queues.clock() - start < 5


def test_drain_processes_everything_including_delayed_messages(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, _, _ = make_driver(queues, handler)
    queue.send("now")
    queue.send("soon", delay_seconds=2)
    stats = driver.drain(idle_timeout=10)
    assert stats == DrainStats(processed=2, failed=0, poisoned=0)
    assert [d.text for d in handler.deliveries] == ["now", "soon"]
    assert queue.approximate_count() == 0


def test_drain_gives_up_on_messages_that_stay_invisible(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, _, _ = make_driver(queues, handler)
    queue.send("leased by someone else")
    assert queue.receive(visibility_timeout=600) is not None
    start = queues.clock()
    assert driver.drain(idle_timeout=1) == DrainStats()
    assert 1 <= queues.clock() - start < 5
    assert queue.approximate_count() == 1


def test_drain_stops_after_max_messages(queues: QueuesEnv) -> None:
    handler = Recorder()
    driver, queue, _, _ = make_driver(queues, handler)
    for n in range(3):
        queue.send(f"m{n}")
    assert driver.drain(max_messages=2) == DrainStats(processed=2)
    assert queue.approximate_count() == 1


def test_a_handler_chain_of_continuations_is_drained(queues: QueuesEnv) -> None:
    queue_holder: list[TaskQueue] = []
    seen: list[str] = []

    def handler(delivery: Delivery) -> None:
        seen.append(delivery.text)
        page = int(delivery.text)
        if page < 3:
            queue_holder[0].send(str(page + 1), delay_seconds=1 if page == 1 else 0)

    queue, poison = queues.make(), queues.make()
    queue_holder.append(queue)
    driver = QueueDriver(queue, poison, handler, clock=DriverClock(queues.sleep, queues.clock))
    queue.send("0")
    assert driver.drain(idle_timeout=5) == DrainStats(processed=4)
    assert seen == ["0", "1", "2", "3"]


def test_a_lease_lost_during_the_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    queue, poison = MemoryTaskQueue(clock, name="work"), MemoryTaskQueue(clock, name="work-poison")

    def slow(delivery: Delivery) -> None:
        clock.sleep(31)
        assert queue.receive(visibility_timeout=30) is not None  # another consumer takes it

    driver = QueueDriver(queue, poison, slow, lease_seconds=30, clock=DriverClock(clock.sleep, clock))
    queue.send("x")
    with caplog.at_level(logging.WARNING, logger="hydration.storage.driver"):
        assert driver.step() is DeliveryOutcome.PROCESSED
    assert "lease" in caplog.text
    assert queue.approximate_count() == 1  # the other consumer still holds it


def test_a_failing_on_poison_does_not_stop_the_driver(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    queue, poison = MemoryTaskQueue(clock, name="work"), MemoryTaskQueue(clock, name="work-poison")

    def broken(delivery: Delivery, reason: str) -> None:
        raise RuntimeError("poison handler bug")

    driver = QueueDriver(queue, poison, Recorder(), on_poison=broken, clock=DriverClock(clock.sleep, clock))
    queue.send_raw("!!!")
    queue.send("fine")
    with caplog.at_level(logging.ERROR, logger="hydration.storage.driver"):
        assert driver.drain() == DrainStats(processed=1, poisoned=1)
    assert "on_poison failed" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [{"max_dequeue_count": 0}, {"visibility_timeout": -1}, {"lease_seconds": 0}, {"lease_seconds": 10**7}],
)
def test_invalid_settings_are_refused(kwargs: dict[str, int]) -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock)
    with pytest.raises(ValueError, match="must be"):
        QueueDriver(queue, queue, Recorder(), **kwargs)  # type: ignore[arg-type]
