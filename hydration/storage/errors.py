"""What can go wrong with queues and tables, named by what the caller should do about it.

::

    StorageError                    not worth retrying as is (bad request, auth, unexpected answer)
    ├── ConflictError               someone else won: stale ETag, entity already exists, lost message lease
    ├── StorageUnavailableError     try again later: connection refused or reset, timeout, 5xx, 408
    └── InvalidStorageKeyError      a PartitionKey/RowKey Table Storage refuses (also a ValueError)

``ConflictError`` is not a failure of the store: it is the answer that makes claims idempotent (a worker
that loses an ETag race or finds its insert already done knows another delivery got there first).

``translate`` is the one place where ``azure.core`` exceptions become these; the adapters call it at the
boundary so no vendor exception reaches the planner or the worker.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)


class StorageError(Exception):
    """Base of every storage error; ``status`` and ``code`` as the service answered, when it did."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ConflictError(StorageError):
    """A conditional write lost: the ETag no longer matches, the entity exists, or the lease is gone."""


class StorageUnavailableError(StorageError):
    """The service could not be reached or answered with a server error; retry later."""


class InvalidStorageKeyError(StorageError, ValueError):
    r"""A PartitionKey or RowKey that Table Storage forbids (``/ \ # ?``, control characters, > 1 KiB)."""


_RETRIABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def translate(error: AzureError, what: str) -> StorageError:
    """The storage error for an ``azure.core`` exception; ``what`` names the operation for the message.

    The message keeps the service's error code and status but never the request body, so entity values
    and message texts stay out of logs.
    """
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return StorageUnavailableError(f"{what}: storage unreachable ({type(error).__name__})")
    if not isinstance(error, HttpResponseError):
        return StorageError(f"{what}: {type(error).__name__}")
    status = error.status_code
    code = _error_code(error)
    detail = f"{what}: HTTP {status} {code or ''}".rstrip()
    if isinstance(error, ResourceModifiedError | ResourceExistsError) or status in (409, 412):
        return ConflictError(detail, status=status, code=code)
    if status is not None and (status in _RETRIABLE_STATUSES or status >= 500):
        return StorageUnavailableError(detail, status=status, code=code)
    return StorageError(detail, status=status, code=code)


def _error_code(error: HttpResponseError) -> str | None:
    code = getattr(error, "error_code", None)
    if code:
        return str(code)
    headers = getattr(error.response, "headers", None) or {}
    header = headers.get("x-ms-error-code")
    return str(header) if header else None
