"""What can go wrong talking to Dataverse, named by what the caller should do about it.

::

    DataverseError
    ├── RetriableError          try again later (the queue's retry, after in-process retries)
    │   ├── TransientError      5xx, 408, connection failures
    │   └── ThrottledError      429 service protection; ``retry_after`` seconds
    └── FatalError              retrying will not help; fail the task with the message
        ├── AuthError           401/403: no token, not a member of the organization, no privilege
        ├── NotFoundError       404: a table, column or row that does not exist
        ├── RequestError        400/412/413 and other client errors
        └── UnsafeLinkError     a next link pointing away from the organization

``classify`` is the one place that turns an HTTP answer into one of these verdicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any


class DataverseError(Exception):
    """Base of every error the client raises; ``status`` and ``code`` as Dataverse answered them."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class RetriableError(DataverseError):
    """Worth trying again later."""


class TransientError(RetriableError):
    """A server or network failure expected to pass (5xx, 408, connection errors)."""


class ThrottledError(RetriableError):
    """Service protection answered 429; wait ``retry_after`` seconds before the next request."""

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, status=429, code=code)
        self.retry_after = retry_after


class FatalError(DataverseError):
    """Retrying will not help."""


class AuthError(FatalError):
    """The identity has no token, is not a member of the organization, or lacks a privilege."""


class NotFoundError(FatalError):
    """A table, column, relationship or row that does not exist."""


class RequestError(FatalError):
    """The request was refused as malformed or conflicting."""


class UnsafeLinkError(FatalError):
    """A link from the server points somewhere the client must not send its token."""


class Verdict(Enum):
    """What an answer means for the caller."""

    OK = "ok"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    FATAL = "fatal"


@dataclass(frozen=True)
class Classified:
    """An answer's verdict, with the server's error code and message and any ``Retry-After``."""

    verdict: Verdict
    status: int
    code: str | None = None
    message: str = ""
    retry_after: float | None = None

    def error(self) -> DataverseError:
        """The exception this verdict raises when it is not OK."""
        text = f"Dataverse answered {self.status}" + (f" {self.code}" if self.code else "")
        text += f": {self.message}" if self.message else ""
        if self.verdict is Verdict.THROTTLED:
            return ThrottledError(text, retry_after=self.retry_after or 0.0, code=self.code)
        if self.verdict is Verdict.TRANSIENT:
            return TransientError(text, status=self.status, code=self.code)
        kind: type[FatalError] = RequestError
        if self.status in (401, 403):
            kind = AuthError
        elif self.status == 404:
            kind = NotFoundError
        return kind(text, status=self.status, code=self.code)


TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Dataverse sends whole seconds); ``None`` if absent or bad."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_details(body: bytes) -> tuple[str | None, str]:
    """The ``code`` and ``message`` of a Dataverse error body (never the whole body: it may hold data)."""
    try:
        payload: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, ""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None), (message[:500] if isinstance(message, str) else "")


def classify(status: int, headers: Any, body: bytes) -> Classified:
    """Turn one HTTP answer into a verdict; ``headers`` is any case-insensitive mapping."""
    if status < 300:
        return Classified(Verdict.OK, status)
    code, message = error_details(body)
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return Classified(
            Verdict.THROTTLED, status, code, message, 5.0 if retry_after is None else retry_after
        )
    if status in TRANSIENT_STATUSES:
        return Classified(
            Verdict.TRANSIENT, status, code, message, parse_retry_after(headers.get("Retry-After"))
        )
    return Classified(Verdict.FATAL, status, code, message)
