"""An emulator over TLS for clients we did not write, used exactly as their users use them.

Microsoft's Python SDK refuses ``http://`` organization URLs, so these tests serve https with a CA
made at start; a client trusts it through its ordinary setting (``REQUESTS_CA_BUNDLE`` for
``requests``, ``NODE_EXTRA_CA_CERTS`` for node), never through a change to the client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dataverse_emulator import EmulatorServer, SeedParams
from dataverse_emulator.client import EmulatorClient

CONTACTS, LEADS, SEED = 40, 10, 11
SCENE_MODES = {"cid_lookup": "present"}
"""CI-D's lookup from contact and lead to the profile table exists, so binds have a target."""


@pytest.fixture(scope="module")
def tls_server() -> Iterator[EmulatorServer]:
    """An emulator on https, with ``REQUESTS_CA_BUNDLE`` naming its CA while the module runs."""
    with EmulatorServer(seed=SeedParams(CONTACTS, LEADS, SEED), modes=SCENE_MODES, tls=True) as server:
        assert server.tls is not None
        assert server.tls.ca is not None
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REQUESTS_CA_BUNDLE", str(server.tls.ca))
            yield server


@pytest.fixture
def control(tls_server: EmulatorServer) -> EmulatorClient:
    """The control API of the TLS emulator, reset to the conformance scene."""
    client = EmulatorClient(tls_server.base_url)
    client.reset(contacts=CONTACTS, leads=LEADS, seed=SEED, modes=SCENE_MODES)
    return client
