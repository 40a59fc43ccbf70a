"""Shared fixtures: one emulator server per test session, reset to a known scene for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dataverse_emulator import EmulatorServer, SeedParams
from dataverse_emulator.client import EmulatorClient, WebApi
from devtools.azurite import Azurite

CONTACTS, LEADS, SEED = 300, 150, 7


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """A real emulator over HTTP on a free loopback port."""
    with EmulatorServer(seed=SeedParams(contacts=CONTACTS, leads=LEADS, seed=SEED)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorClient:
    """The control client of a freshly reset emulator (default modes, the standard scene)."""
    client = EmulatorClient(emulator_server.base_url)
    client.reset(contacts=CONTACTS, leads=LEADS, seed=SEED)
    return client


@pytest.fixture
def api(emulator: EmulatorClient) -> Iterator[WebApi]:
    """A Web API session as the application user, on the freshly reset emulator."""
    with emulator.web_api("hydration-app") as session:
        yield session


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[Azurite]:
    """The session's Azurite process (tests that restart it must leave it running)."""
    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def azurite(azurite_server: Azurite) -> str:
    """The connection string of the session's Azurite."""
    return azurite_server.connection_string
