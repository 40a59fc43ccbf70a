"""The app wired as the Functions host would wire it: settings from an environment, real adapters.

Each test gets its own state tables (a fresh table prefix) and empty job queues on the session's
Azurite, and the emulator reset to the standard scene with its clock past the settle period.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.local_run import drain_run, local_driver
from hydration.service import Services, services
from hydration.settings import Settings
from hydration.storage.driver import QueueDriver

SOURCES = {
    "contact": [("DataverseSales", "contact"), ("DataverseMarketing", "contact")],
    "lead": [("DataverseSales", "lead")],
}


def manifest(
    organization_url: str, *, tables: list[dict[str, Any]] | None = None, **top: Any
) -> dict[str, Any]:
    """A manifest of the emulator's scene (both contact sources, the lead source, a non-Dataverse one)."""
    data: dict[str, Any] = {
        "version": 1,
        "organizationUrl": organization_url,
        "outputMode": "dataverse",
        "environmentType": "individuals",
        "tables": tables
        if tables is not None
        else [
            {
                "dataSource": "DataverseSales",
                "entity": "contact",
                "connector": "Dataverse",
                "primaryKey": "contactid",
            },
            {
                "dataSource": "DataverseMarketing",
                "entity": "contact",
                "connector": "Dataverse",
                "primaryKey": "contactid",
            },
            {
                "dataSource": "DataverseSales",
                "entity": "lead",
                "connector": "Dataverse",
                "primaryKey": "leadid",
            },
            {
                "dataSource": "LoyaltyPlatform",
                "entity": "Members",
                "connector": "CSV",
                "primaryKey": "MemberId",
            },
        ],
    }
    data.update(top)
    return data


@pytest.fixture
def app_env(emulator: EmulatorClient, azurite: str) -> dict[str, str]:
    """Settings for the app against the emulator and Azurite, with this test's own state tables.

    The emulator serves short pages, as elastic tables do: no app test passes on an engine that takes a
    short page for the last.
    """
    emulator.advance_clock(16 * 60)
    emulator.modes(short_pages=7)
    env = {
        "DATAVERSE_URL": emulator.base_url,
        "HYDRATION_STORAGE": azurite,
        "HYDRATION_MANIFEST": json.dumps(manifest(emulator.base_url)),
        "HYDRATION_TABLE_PREFIX": "t" + uuid.uuid4().hex[:12],
        "HYDRATION_ALLOW_CREATE_LOOKUP": "true",
    }
    svc = services(env)
    svc.queue.clear()
    svc.poison.clear()
    return env


@pytest.fixture
def svc(app_env: dict[str, str]) -> Services:
    """The services the functions use for ``app_env``."""
    return services(app_env)


@pytest.fixture
def host_env(monkeypatch: pytest.MonkeyPatch, app_env: dict[str, str]) -> dict[str, str]:
    """``app_env`` as the process environment, for calling the decorated functions as the host does."""
    for name in list(app_env):
        monkeypatch.setenv(name, app_env[name])
    return app_env


def one_page_steps(env: dict[str, str], *, clock: Callable[[], datetime] | None = None) -> Services:
    """Services whose every message does one page of 100 rows, so a pass has many steps to break."""
    settings = Settings.from_env({**env, "HYDRATION_PAGE_SIZE": "100"})
    settings = replace(settings, link=replace(settings.link, step_pages=1))
    if clock is None:
        return Services.from_settings(settings)
    return Services.from_settings(settings, clock=clock)


def drain(svc: Services, run_id: str, *, visibility_timeout: int = 0) -> dict[str, Any]:
    """Process the queue through the queue handlers until the run is final; the run's status view."""
    return drain_run(
        svc, run_id, out=io.StringIO(), driver=queue_driver(svc, visibility_timeout=visibility_timeout)
    )


def queue_driver(svc: Services, *, visibility_timeout: int = 0, lease_seconds: int = 60) -> QueueDriver:
    """The CLI's local driver with a short retry delay (host.json's 30 s would only slow tests)."""
    return local_driver(svc, visibility_timeout=visibility_timeout, lease_seconds=lease_seconds)


def truth(emulator: EmulatorClient, table: str) -> dict[str, Any]:
    """The emulator's row-by-row check of a table's links."""
    return dict(emulator.links(table, rows="wrong"))


def assert_all_correct(emulator: EmulatorClient, *tables: str) -> None:
    """Every row of every table holds exactly the link the mapping asks for."""
    for table in tables or ("contact", "lead"):
        summary = truth(emulator, table)["summary"]
        assert summary["correct"] == summary["rows"], (table, summary)
