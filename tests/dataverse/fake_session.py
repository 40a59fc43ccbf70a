"""Scripted fakes for the Web API client: a ``requests.Session`` that never opens a socket, a recording clock.

The fake session is injected through the client's ``session_factory`` and the clock through ``clock``;
each test scripts the answers (or connection errors) the session hands back, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import requests
from azure.core.credentials import AccessToken
from requests.structures import CaseInsensitiveDict

from hydration.clock import FakeClock
from hydration.dataverse.auth import TokenProvider
from hydration.dataverse.client import API_PATH, ClientSettings, DataverseClient

ORG = "https://org.crm.dynamics.com"
API = ORG + API_PATH
SERVER_TIME = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HOST_TIME = SERVER_TIME + timedelta(days=1)
"""The host's fake clock: ahead of every scripted answer's ``Date`` (the client ignores future ones)."""
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


# -- fakes -----------------------------------------------------------------------------------------


def answer(
    status: int = 200,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    date: datetime | None = SERVER_TIME,
    url: str = API,
) -> requests.Response:
    """A ``requests.Response`` as the transport would build it."""
    response = requests.Response()
    response.status_code = status
    if isinstance(body, bytes):
        response._content = body
    else:
        response._content = b"" if body is None else json.dumps(body).encode("utf-8")
    all_headers: dict[str, str] = {}
    if body is not None and not isinstance(body, bytes):
        all_headers["Content-Type"] = "application/json; odata.metadata=minimal"
    if date is not None:
        all_headers["Date"] = format_datetime(date, usegmt=True)
    all_headers.update(headers or {})
    response.headers = CaseInsensitiveDict(all_headers)
    response.url = url
    response.encoding = "utf-8"
    return response


def error(
    status: int, code: str = "0x80040217", message: str = "it went wrong", **headers: str
) -> requests.Response:
    return answer(status, {"error": {"code": code, "message": message}}, headers=headers)


Script = requests.Response | Exception


@dataclass
class Sent:
    method: str
    url: str
    kwargs: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.kwargs.get("headers") or {})


class FakeSession(requests.Session):
    """Hands out scripted answers in order and records every request; never opens a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Script] = []
        self.sent: list[Sent] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        assert not args, "the client passes everything by keyword"
        self.sent.append(Sent(str(method), str(url), kwargs))
        if not self.script:
            raise AssertionError(f"unscripted request {method!r} {url!r}")
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@dataclass
class Credential:
    """Numbered tokens, so a test can tell a refreshed one from the first."""

    calls: int = 0

    def get_token(self, *scopes: str) -> AccessToken:
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(HOST_TIME.timestamp()) + 86_400)


class RecordingClock(FakeClock):
    """A fake clock that also keeps every wait, in order (the client's backoff is what is tested)."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record the wait, then move the clocks on by it."""
        self.waits.append(seconds)
        super().sleep(seconds)


@dataclass
class Setup:
    client: DataverseClient
    session: FakeSession
    credential: Credential
    clock: RecordingClock

    def script(self, *items: Script) -> None:
        self.session.script.extend(items)

    @property
    def sent(self) -> list[Sent]:
        return self.session.sent


Make = Callable[..., Setup]


def build(
    settings: ClientSettings | None = None, organization_url: str = ORG, clock: RecordingClock | None = None
) -> Setup:
    """A client on a fresh fake session, credential and recording clock."""
    session, credential, recording = FakeSession(), Credential(), clock or RecordingClock(HOST_TIME)
    client = DataverseClient(
        organization_url=organization_url,
        tokens=TokenProvider(credential, organization_url, clock=recording),
        settings=settings,
        clock=recording,
        session_factory=lambda: session,
    )
    return Setup(client, session, credential, recording)
