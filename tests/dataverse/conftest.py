"""Fixtures for the Dataverse client package: the product's client against the emulator over HTTP.

The session's emulator server comes from ``tests/conftest.py``; each test here reseeds it with a small
scene (the metadata tests need few rows) and gets a fresh client, so cached metadata never leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient
from hydration.clock import FakeClock
from hydration.dataverse.auth import DevelopmentToken, TokenProvider
from hydration.dataverse.client import DataverseClient

from .fake_session import Make, Setup, build

CONTACTS, LEADS, SEED = 50, 20, 1
USER = "app"


@dataclass
class Sent:
    """One request as the client handed it to ``requests``."""

    method: str
    url: str
    headers: dict[str, str]
    json: Any


Hook = Callable[[str, str, dict[str, Any]], None]
"""Called before a request goes out, with its method, URL and keyword arguments (which it may change)."""


@dataclass
class Recorder:
    """Records what the client sends and lets a test act just before a request leaves (a race, a swap)."""

    sent: list[Sent] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)

    def session(self) -> requests.Session:
        recorder = self

        class RecordingSession(requests.Session):
            def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
                text_method = method.decode() if isinstance(method, bytes) else method
                text_url = url.decode() if isinstance(url, bytes) else url
                for hook in recorder.hooks:
                    hook(text_method, text_url, kwargs)
                recorder.sent.append(
                    Sent(text_method, text_url, dict(kwargs.get("headers") or {}), kwargs.get("json"))
                )
                return super().request(method, url, *args, **kwargs)

        return RecordingSession()

    def posts(self) -> list[Sent]:
        return [s for s in self.sent if s.method == "POST"]


@pytest.fixture
def control(emulator_server: EmulatorServer) -> EmulatorClient:
    """The emulator's control API, reseeded with a small scene and default modes."""
    client = EmulatorClient(emulator_server.base_url)
    client.reset(contacts=CONTACTS, leads=LEADS, seed=SEED)
    return client


@pytest.fixture
def reseed(control: EmulatorClient) -> Callable[..., None]:
    """Reseed with seed-time modes (``cid_lookup``, ``cid_lookup_navigation_property``)."""

    def apply(**modes: Any) -> None:
        control.reset(contacts=CONTACTS, leads=LEADS, seed=SEED, modes=modes)

    return apply


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(emulator_server: EmulatorServer, control: EmulatorClient, recorder: Recorder) -> DataverseClient:
    """The product's client as user ``app``, over real HTTP, recording what it sends."""
    url = emulator_server.base_url
    return DataverseClient(
        organization_url=url,
        tokens=TokenProvider(DevelopmentToken(url, USER), url),
        session_factory=recorder.session,
    )


class EmulatorClock(FakeClock):
    """A fake clock whose sleeps also move the emulator's clock (or, with ``moves_emulator`` off, don't)."""

    def __init__(self, control: EmulatorClient) -> None:
        super().__init__()
        self.control = control
        self.moves_emulator = True
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record the pause, move this clock and, unless frozen, the emulator's."""
        self.pauses.append(seconds)
        super().sleep(seconds)
        if self.moves_emulator:
            self.control.advance_clock(seconds)


@pytest.fixture
def emulator_clock(control: EmulatorClient) -> EmulatorClock:
    return EmulatorClock(control)


@pytest.fixture
def make() -> Make:
    """Builds a client on a scripted fake session (``fake_session.build``)."""
    return build


@pytest.fixture
def fake() -> Setup:
    """A client for ``ORG`` on a scripted fake session with a recording fake clock."""
    return build()
