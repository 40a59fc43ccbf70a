"""The task queue's contract, run against the in-memory fake and against Azurite alike."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from azure.storage.queue import QueueClient

from devtools.azurite import Azurite
from hydration.storage import (
    AzureTaskQueue,
    ConflictError,
    MemoryTaskQueue,
    StorageUnavailableError,
    poison_queue_name,
)
from hydration.storage.queues import MAX_PAYLOAD_BYTES, Received, TaskQueue, decode_body, encode_text
from tests.storage.conftest import ManualClock, QueuesEnv, unique


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def test_send_receive_delete(queues: QueuesEnv) -> None:
    queue = queues.make()
    assert queue.receive(visibility_timeout=30) is None
    queue.send('{"run": "r1", "table": "contact", "seq": 0} — é 😀')
    assert queue.approximate_count() == 1
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    assert message.text == '{"run": "r1", "table": "contact", "seq": 0} — é 😀'
    assert message.dequeue_count == 1
    assert message.raw == b64(message.text)
    assert queue.receive(visibility_timeout=30) is None  # leased
    queue.delete(message)
    assert queue.approximate_count() == 0
    assert queue.receive(visibility_timeout=30) is None


def test_a_delayed_send_is_invisible_until_the_delay_passes(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("later", delay_seconds=1)
    assert queue.receive(visibility_timeout=30) is None
    assert queue.approximate_count() == 1  # counted while invisible
    queues.advance(1)
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    assert message.text == "later"


def test_release_redelivers_with_a_growing_dequeue_count(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("task")
    counts = []
    for _ in range(3):
        message = queue.receive(visibility_timeout=60)
        assert message is not None
        counts.append(message.dequeue_count)
        queue.release(message)
    assert counts == [1, 2, 3]
    message = queue.receive(visibility_timeout=60)
    assert message is not None
    queue.release(message, delay_seconds=1)
    assert queue.receive(visibility_timeout=60) is None
    queues.advance(1)
    again = queue.receive(visibility_timeout=60)
    assert again is not None
    assert again.dequeue_count == 5
    assert again.text == "task"


def test_an_expired_lease_redelivers_and_voids_the_old_pop_receipt(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("task")
    first = queue.receive(visibility_timeout=1)
    assert first is not None
    queues.advance(1)
    second = queue.receive(visibility_timeout=60)
    assert second is not None
    assert second.id == first.id
    assert second.dequeue_count == 2
    with pytest.raises(ConflictError):
        queue.delete(first)
    with pytest.raises(ConflictError):
        queue.release(first)
    queue.delete(second)
    with pytest.raises(ConflictError):
        queue.delete(second)  # gone


def test_undecodable_bodies_are_returned_not_raised(queues: QueuesEnv) -> None:
    queue = queues.make()
    queues.send_raw(queue, "this is not base64!")
    queues.send_raw(queue, base64.b64encode(b"\xff\xfe not utf-8").decode("ascii"))
    seen = []
    for _ in range(2):
        message = queue.receive(visibility_timeout=30)
        assert message is not None
        assert message.text is None
        seen.append(message.raw)
        queue.delete(message)
    assert sorted(seen) == sorted(["this is not base64!", base64.b64encode(b"\xff\xfe not utf-8").decode()])


def test_empty_text_round_trips(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    assert message.text == ""


def test_largest_payload_is_accepted_and_larger_refused(queues: QueuesEnv) -> None:
    queue = queues.make()
    largest = "é" * (MAX_PAYLOAD_BYTES // 2)
    queue.send(largest)
    with pytest.raises(ValueError, match="limit"):
        queue.send(largest + "x")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    assert message.text == largest
    assert queue.approximate_count() == 1


def test_clear_and_count(queues: QueuesEnv) -> None:
    queue = queues.make()
    for n in range(3):
        queue.send(f"m{n}", delay_seconds=n * 60)
    assert queue.receive(visibility_timeout=30) is not None
    assert queue.approximate_count() == 3
    queue.clear()
    assert queue.approximate_count() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda queue: queue.send("x", delay_seconds=-1),
        lambda queue: queue.send("x", delay_seconds=1.5),
        lambda queue: queue.send("x", delay_seconds=True),
        lambda queue: queue.receive(visibility_timeout=0),
        lambda queue: queue.receive(visibility_timeout=7 * 24 * 3600 + 1),
        lambda queue: queue.release(Received("id", "receipt", "x", 1, "eA=="), delay_seconds=-1),
    ],
)
def test_out_of_range_times_are_refused(queues: QueuesEnv, call: Callable[[TaskQueue], object]) -> None:
    queue = queues.make()
    with pytest.raises(ValueError, match="seconds"):
        call(queue)


@pytest.mark.parametrize("delay", [7 * 24 * 3600 + 1, 10**7, 10**12])
def test_a_delay_beyond_seven_days_is_clamped_not_refused(queues: QueuesEnv, delay: int) -> None:
    # a Retry-After of weeks once made the throttle path raise ValueError and lose the step
    queue = queues.make()
    queue.send("much later", delay_seconds=delay)
    assert queue.receive(visibility_timeout=1) is None
    assert queue.approximate_count() == 1


def test_a_release_beyond_seven_days_is_clamped(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("x")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    queue.release(message, delay_seconds=10**9)
    assert queue.receive(visibility_timeout=1) is None
    assert queue.approximate_count() == 1


def test_a_clamped_delay_ends_at_seven_days() -> None:
    clock = ManualClock()
    queue = MemoryTaskQueue(clock, name="tasks")
    queue.send("x", delay_seconds=10**9)
    clock.sleep(7 * 24 * 3600 - 1)
    assert queue.receive(visibility_timeout=1) is None
    clock.sleep(1)
    assert queue.receive(visibility_timeout=1) is not None


def test_the_longest_delay_is_accepted(queues: QueuesEnv) -> None:
    queue = queues.make()
    queue.send("next week", delay_seconds=7 * 24 * 3600)
    assert queue.receive(visibility_timeout=1) is None
    assert queue.approximate_count() == 1


@pytest.mark.parametrize("name", ["ab", "Upper", "-lead", "trail-", "dou--ble", "under_score", "a" * 64])
def test_invalid_queue_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        MemoryTaskQueue(ManualClock(), name=name)
    with pytest.raises(ValueError, match="queue name"):
        AzureTaskQueue.from_connection_string("UseDevelopmentStorage=true", name)


def test_poison_queue_name() -> None:
    assert poison_queue_name("hydration-tasks") == "hydration-tasks-poison"
    with pytest.raises(ValueError, match="queue name"):
        poison_queue_name("a" * 60)


def test_wire_codec() -> None:
    assert encode_text("héllo") == b64("héllo")
    assert decode_body(b64("héllo")) == "héllo"
    spaced = f" {b64('héllo')[:4]}\n{b64('héllo')[4:]} "
    assert decode_body(spaced) == "héllo"  # whitespace is ignored, as the host's decoder does
    assert decode_body("aOllbG8") is None  # bad padding
    assert decode_body("héllo") is None
    with pytest.raises(TypeError):
        encode_text(b"bytes")  # type: ignore[arg-type]


# --- Azure specifics -------------------------------------------------------------------------------


@pytest.mark.integration
def test_azure_messages_are_base64_on_the_wire(azurite: str) -> None:
    queue = AzureTaskQueue.from_connection_string(azurite, unique("q-"))
    queue.send('{"kind": "page"} é')
    plain = QueueClient.from_connection_string(azurite, queue.name)  # no encode/decode policy
    [peeked] = plain.peek_messages()
    assert peeked.content == b64('{"kind": "page"} é')
    assert base64.b64decode(peeked.content).decode("utf-8") == '{"kind": "page"} é'


@pytest.mark.integration
def test_azure_outage_raises_unavailable_then_recovers(azurite_server: Azurite) -> None:
    queue = AzureTaskQueue.from_connection_string(
        azurite_server.connection_string, unique("q-"), retry_total=0
    )
    queue.send("before")
    held = queue.receive(visibility_timeout=60)
    assert held is not None
    azurite_server.stop()
    try:
        for call in (
            lambda: queue.send("during"),
            lambda: queue.receive(visibility_timeout=30),
            lambda: queue.delete(held),
            lambda: queue.release(held),
            queue.approximate_count,
            queue.clear,
            lambda: AzureTaskQueue.from_connection_string(
                azurite_server.connection_string, unique("q-"), retry_total=0
            ).send("x"),
        ):
            with pytest.raises(StorageUnavailableError):
                call()
    finally:
        azurite_server.start()
    queue.release(held)
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    assert message.text == "before"
    assert message.dequeue_count == 2
