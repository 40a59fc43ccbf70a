"""The request and answer objects handlers work with, independent of the HTTP server.

The same handlers serve top-level HTTP requests and the requests inside a ``$batch``, so they see this
small model rather than the server library's objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from .errors import ApiError

ODATA_HEADERS = {"OData-Version": "4.0"}
_PREFERENCE = re.compile(r'\s*([^=,\s]+)\s*(?:=\s*("[^"]*"|[^,]*))?\s*(?:,|$)')
JSON_TYPE = "application/json; odata.metadata=minimal"


@dataclass(frozen=True)
class ApiRequest:
    """One Web API request: ``path`` is what follows ``/api/data/v9.2/``, decoded; headers lowercase."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    user: str
    base_url: str
    """``http://host:port/api/data/v9.2/``, for links and ``@odata.context``."""
    inner: bool = False

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON, or a 400 when it is not."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "0x80048d19", f"Error in parsing the request content: {exc}") from exc

    def prefer(self) -> dict[str, str]:
        """The ``Prefer`` preferences as name → value (``""`` for a bare preference)."""
        found: dict[str, str] = {}
        for name, value in _PREFERENCE.findall(self.header("prefer") or ""):
            found[name.lower()] = value.strip().strip('"')
        return found


@dataclass
class ApiResponse:
    """One answer: status, headers and body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    kind: str = "other"
    """What the request was, for the request counters (query, update, batch, ...)."""


def json_response(status: int, payload: Any, *, headers: Mapping[str, str] | None = None) -> ApiResponse:
    """A JSON answer with the OData headers."""
    return ApiResponse(
        status,
        {**ODATA_HEADERS, "Content-Type": JSON_TYPE, **(headers or {})},
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def no_content(headers: Mapping[str, str] | None = None) -> ApiResponse:
    """A 204 answer."""
    return ApiResponse(204, {**ODATA_HEADERS, **(headers or {})})


def error_response(error: ApiError) -> ApiResponse:
    """The Dataverse error body for a failure."""
    return json_response(
        error.status, {"error": {"code": error.code, "message": error.message}}, headers=error.headers
    )


def http_date(micros: int) -> str:
    """An HTTP ``Date`` header value for a server time."""
    return formatdate(micros / 1_000_000, usegmt=True)
