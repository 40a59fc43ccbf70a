"""Task queues: Azure Storage queues as the Functions host reads them, and an in-memory fake.

Wire format. Message text is sent as base64 of its UTF-8 bytes (``TextBase64EncodePolicy``), which is
what a queue trigger expects with ``host.json`` ``messageEncoding: base64`` (the Functions default).
Receiving decodes strictly (ASCII whitespace is ignored, as .NET's decoder does). A body that is not
base64 of UTF-8 does not make ``receive`` fail, which would leave the message invisible and nameless:
it comes back with ``Received.text = None`` and its wire body in ``Received.raw``, and the driver moves
it to the poison queue as the host does.

Sent messages never expire (time-to-live -1): a continuation must not silently vanish after 7 days,
and it lets a send be delayed by up to the service's 7-day limit. A longer delay (a server's
``Retry-After`` of weeks) is clamped to that limit, here in the adapter, rather than refused by the
service as a malformed request: the message is then delivered early, which the worker handles as it
handles any delivery, instead of being lost with the step that tried to send it.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.queue import (
    ExponentialRetry,
    QueueClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from hydration.storage.errors import ConflictError, translate

MAX_PAYLOAD_BYTES = 48 * 1024  # 64 KiB of message text once base64-encoded
MAX_DELAY_SECONDS = 7 * 24 * 3600
POISON_SUFFIX = "-poison"
_QUEUE_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_LOST_LEASE_CODES = frozenset({"MessageNotFound", "PopReceiptMismatch"})


@dataclass(frozen=True)
class Received:
    """A message taken from a queue, invisible to others until its visibility timeout passes.

    ``text`` is the decoded text, or None when the body is not base64 of UTF-8 ("undecodable");
    ``raw`` is the body as it is on the wire. ``pop_receipt`` is needed to delete or release it and
    stops working once the message is received again (by anyone).
    """

    id: str
    pop_receipt: str
    text: str | None
    dequeue_count: int
    raw: str


class TaskQueue(Protocol):
    """A queue of text messages with visibility timeouts and dequeue counts (at-least-once delivery).

    ``delete`` and ``release`` raise ``ConflictError`` when the pop receipt no longer holds (the
    visibility timeout passed and the message was received again, or it is gone).
    """

    name: str

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        """Enqueue ``text``, invisible for ``delay_seconds`` (a longer delay is clamped to 7 days)."""
        ...

    def receive(self, *, visibility_timeout: int) -> Received | None:
        """The next visible message, hidden from others for ``visibility_timeout`` seconds, or None."""
        ...

    def delete(self, message: Received) -> None:
        """Remove a received message for good (it was handled)."""
        ...

    def release(self, message: Received, *, delay_seconds: int = 0) -> None:
        """Make a received message visible again after ``delay_seconds`` (clamped to 7 days)."""
        ...

    def approximate_count(self) -> int:
        """How many messages the queue holds, visible or not (delayed and in-flight ones count)."""
        ...

    def clear(self) -> None:
        """Remove every message."""
        ...


def validate_queue_name(name: str) -> str:
    """The name if Storage accepts it (3-63 lowercase letters, digits, single inner hyphens)."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"invalid queue name {name!r}: 3-63 lowercase letters, digits and single hyphens")
    return name


def poison_queue_name(name: str) -> str:
    """The poison queue the Functions host uses for ``name``: ``<name>-poison``."""
    return validate_queue_name(validate_queue_name(name) + POISON_SUFFIX)


def encode_text(text: str) -> str:
    """The wire body for ``text`` (base64 of UTF-8); ``ValueError`` beyond 48 KiB of payload."""
    if not isinstance(text, str):
        raise TypeError(f"message text must be str, not {type(text).__name__}")
    payload = text.encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"message text is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return base64.b64encode(payload).decode("ascii")


def decode_body(raw: str) -> str | None:
    """The text of a wire body, or None when it is not base64 of UTF-8."""
    try:
        compact = "".join(raw.split()).encode("ascii")
        return base64.b64decode(compact, validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return None


def _check_seconds(value: int, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_DELAY_SECONDS:
        raise ValueError(f"{what} must be an int between {minimum} and {MAX_DELAY_SECONDS} seconds")
    return value


def clamp_delay(value: int) -> int:
    """A delay the service accepts: at most the 7-day maximum; a negative or non-int one is refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"delay_seconds must be an int of at least 0 seconds, not {value!r}"[:120])
    return min(value, MAX_DELAY_SECONDS)


# --- Azure Storage queues --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    raw: str
    text: str | None


class _LenientTextBase64DecodePolicy(TextBase64DecodePolicy):
    """``TextBase64DecodePolicy`` that keeps undecodable bodies instead of failing the whole receive."""

    def decode(self, content: str, response: Any) -> Any:
        return _Body(raw=content, text=decode_body(content))


class AzureTaskQueue:
    """``TaskQueue`` on Azure Storage queues or Azurite; the queue is created on first use.

    The SDK retries brief failures itself (``retry_total`` times, backing off 1, 3, 5 ... seconds);
    what remains surfaces as ``StorageUnavailableError``. Build it with the factories: a client passed
    in directly must carry the same encode and decode policies.
    """

    def __init__(self, *, client: QueueClient) -> None:
        self.name = validate_queue_name(client.queue_name)
        self._client = client
        self._created = False
        self._lock = threading.Lock()

    @staticmethod
    def _options(retry_total: int) -> dict[str, Any]:
        return {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": _LenientTextBase64DecodePolicy(),
            "retry_policy": ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=retry_total, random_jitter_range=1
            ),
        }

    @classmethod
    def from_connection_string(
        cls, connection_string: str, name: str, *, retry_total: int = 3
    ) -> AzureTaskQueue:
        """Local development and tests: Azurite's or an account's connection string."""
        validate_queue_name(name)
        client = QueueClient.from_connection_string(connection_string, name, **cls._options(retry_total))
        return cls(client=client)

    @classmethod
    def from_endpoint(
        cls, endpoint: str, name: str, credential: TokenCredential, *, retry_total: int = 3
    ) -> AzureTaskQueue:
        """In Azure: the account's queue endpoint and a managed identity (no shared keys)."""
        validate_queue_name(name)
        return cls(client=QueueClient(endpoint, name, credential=credential, **cls._options(retry_total)))

    def _queue(self) -> QueueClient:
        """The client, after creating the queue the first time this process uses it."""
        with self._lock:
            if not self._created:
                try:
                    self._client.create_queue()
                except ResourceExistsError:
                    pass
                except AzureError as error:
                    raise translate(error, f"create queue {self.name}") from error
                self._created = True
        return self._client

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        """Enqueue ``text``, invisible for ``delay_seconds`` (a longer delay is clamped to 7 days)."""
        encode_text(text)  # validates before anything is sent; the client's policy does the encoding
        delay = clamp_delay(delay_seconds)
        client = self._queue()
        try:
            client.send_message(text, visibility_timeout=delay, time_to_live=-1)
        except AzureError as error:
            raise translate(error, f"send to {self.name}") from error

    def receive(self, *, visibility_timeout: int) -> Received | None:
        """The next visible message, hidden from others for ``visibility_timeout`` seconds, or None."""
        _check_seconds(visibility_timeout, "visibility_timeout", minimum=1)
        client = self._queue()
        try:
            message = client.receive_message(visibility_timeout=visibility_timeout)
        except AzureError as error:
            raise translate(error, f"receive from {self.name}") from error
        if message is None:
            return None
        content = message.content
        body = (
            content if isinstance(content, _Body) else _Body(raw=str(content or ""), text=str(content or ""))
        )
        return Received(
            id=str(message.id),
            pop_receipt=str(message.pop_receipt),
            text=body.text,
            dequeue_count=int(message.dequeue_count or 1),
            raw=body.raw,
        )

    def delete(self, message: Received) -> None:
        """Remove a received message for good (it was handled)."""
        try:
            self._queue().delete_message(message.id, message.pop_receipt)
        except AzureError as error:
            raise self._translate(error, "delete") from error

    def release(self, message: Received, *, delay_seconds: int = 0) -> None:
        """Make a received message visible again after ``delay_seconds`` (clamped to 7 days)."""
        delay = clamp_delay(delay_seconds)
        try:
            self._queue().update_message(message.id, message.pop_receipt, visibility_timeout=delay)
        except AzureError as error:
            raise self._translate(error, "release") from error

    def _translate(self, error: AzureError, what: str) -> Exception:
        code = getattr(error, "error_code", None) if isinstance(error, HttpResponseError) else None
        if code in _LOST_LEASE_CODES:
            return ConflictError(
                f"{what} on {self.name}: the message lease was lost ({code})", code=str(code)
            )
        return translate(error, f"{what} on {self.name}")

    def approximate_count(self) -> int:
        """How many messages the queue holds, visible or not (delayed and in-flight ones count)."""
        try:
            return int(self._queue().get_queue_properties().approximate_message_count or 0)
        except AzureError as error:
            raise translate(error, f"count {self.name}") from error

    def clear(self) -> None:
        """Remove every message."""
        try:
            self._queue().clear_messages()
        except AzureError as error:
            raise translate(error, f"clear {self.name}") from error


# --- in memory ----------------------------------------------------------------------------------


@dataclass
class _Stored:
    id: str
    raw: str
    visible_at: float
    seq: int
    dequeue_count: int = 0
    pop_receipt: str = ""


class MemoryTaskQueue:
    """``TaskQueue`` in memory, for unit tests: visibility and dequeue counts follow an injected clock.

    Bodies are kept base64-encoded as on the wire, so decoding and undecodable messages behave as with
    the service; ``send_raw`` puts a body on the queue as another producer might. The next message
    received is the one visible longest (ties in send order). Thread-safe.
    """

    def __init__(self, clock: Callable[[], float], *, name: str = "tasks") -> None:
        self.name = validate_queue_name(name)
        self._clock = clock
        self._messages: dict[str, _Stored] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        """Enqueue ``text``, invisible for ``delay_seconds`` (a longer delay is clamped to 7 days)."""
        raw = encode_text(text)
        self._put(raw, clamp_delay(delay_seconds))

    def send_raw(self, raw: str, *, delay_seconds: int = 0) -> None:
        """Enqueue a wire body as is (for tests of undecodable messages)."""
        self._put(raw, clamp_delay(delay_seconds))

    def _put(self, raw: str, delay_seconds: int) -> None:
        with self._lock:
            message_id = str(uuid.uuid4())
            self._messages[message_id] = _Stored(
                id=message_id, raw=raw, visible_at=self._clock() + delay_seconds, seq=next(self._seq)
            )

    def receive(self, *, visibility_timeout: int) -> Received | None:
        """The next visible message, hidden from others for ``visibility_timeout`` seconds, or None."""
        _check_seconds(visibility_timeout, "visibility_timeout", minimum=1)
        with self._lock:
            now = self._clock()
            visible = [m for m in self._messages.values() if m.visible_at <= now]
            if not visible:
                return None
            message = min(visible, key=lambda m: (m.visible_at, m.seq))
            message.visible_at = now + visibility_timeout
            message.dequeue_count += 1
            message.pop_receipt = str(uuid.uuid4())
            return Received(
                id=message.id,
                pop_receipt=message.pop_receipt,
                text=decode_body(message.raw),
                dequeue_count=message.dequeue_count,
                raw=message.raw,
            )

    def _held(self, message: Received, what: str) -> _Stored:
        stored = self._messages.get(message.id)
        if stored is None or stored.pop_receipt != message.pop_receipt:
            raise ConflictError(f"{what} on {self.name}: the message lease was lost")
        return stored

    def delete(self, message: Received) -> None:
        """Remove a received message for good (it was handled)."""
        with self._lock:
            del self._messages[self._held(message, "delete").id]

    def release(self, message: Received, *, delay_seconds: int = 0) -> None:
        """Make a received message visible again after ``delay_seconds`` (clamped to 7 days)."""
        delay = clamp_delay(delay_seconds)
        with self._lock:
            stored = self._held(message, "release")
            stored.visible_at = self._clock() + delay
            stored.pop_receipt = str(uuid.uuid4())

    def approximate_count(self) -> int:
        """How many messages the queue holds, visible or not (delayed and in-flight ones count)."""
        with self._lock:
            return len(self._messages)

    def clear(self) -> None:
        """Remove every message."""
        with self._lock:
            self._messages.clear()
