"""Fixtures of the fault matrix: a scene factory per case, and the session's ledger of figures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient

from .scene import Ledger, Scene, scenes


@pytest.fixture(scope="session")
def ledger() -> Iterator[Ledger]:
    """The matrix's figures; written to test-artifacts/faults.json when the session ends."""
    book = Ledger()
    yield book
    book.write()


@pytest.fixture
def scene(
    request: pytest.FixtureRequest, emulator_server: EmulatorServer, azurite: str, ledger: Ledger
) -> Iterator[Callable[..., Scene]]:
    """Make this case's scene (``scene(page_size=…, memory_queues=…)``); its figures go to the ledger.

    The scene seeds the emulator itself (a small scene), so the standard reset is not paid for.
    """
    yield from scenes(EmulatorClient(emulator_server.base_url), azurite, ledger, request.node.name)
