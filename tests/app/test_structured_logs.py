"""Logs of a real run at DEBUG: every record of a step names its run and table; no secret, no row key.

The app is wired from its settings as the host wires it, and every logger is captured at DEBUG, the
Azure SDK's and the HTTP library's included: what Application Insights could receive is all here.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.handlers import services
from hydration.log_context import LANE, RUN_ID, TABLE
from hydration.planner import RunRequest
from hydration.telemetry import EVENT, ROWS_WRITTEN, STATUS, TASK_ENDED
from tests.app.conftest import drain

pytestmark = pytest.mark.integration

TOKEN = "tok-5e1f9c4b7a2d"
"""The development token's text (its user name): a bearer token that must never be logged."""
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
STEP_LOGGERS = ("hydration.worker", "hydration.failures", "hydration.link_writes", "hydration.dataverse")


def data_guids(emulator: EmulatorClient) -> set[str]:
    """Every GUID of the mapping: source rows and profiles, as the emulator holds them."""
    found: set[str] = set()
    with emulator.web_api() as api:
        url = "msdynci_alternatekeys?$select=msdynci_alternatevalue,_msdynci_lookupfield_customer_value"
        while url:
            page = api.get(url, headers={"Prefer": "odata.maxpagesize=5000"}).json()
            for row in page["value"]:
                for value in row.values():
                    found.update(m.lower() for m in GUID.findall(str(value)))
            url = page.get("@odata.nextLink")
    return found


def everything_logged(records: list[logging.LogRecord]) -> str:
    """Each record's message and every attribute it carries, as text."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records)


def test_a_run_at_debug_logs_run_and_table_on_every_step_record_and_no_token_key_or_row(
    emulator: EmulatorClient, app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    svc = services({**app_env, "DATAVERSE_DEVELOPMENT_USER": TOKEN})
    # Some mapping rows name profiles not published yet: their source rows go on the retry list, whose
    # storage keys are source row ids.
    assert emulator.reunify(0.05, seed=3, defer_profiles=True)
    emulator.advance_clock(16 * 60)
    guids = data_guids(emulator)
    assert len(guids) > 300
    with caplog.at_level(logging.DEBUG):
        started = svc.planner().start(RunRequest(trigger="test"))
        view = drain(svc, started.run_id)
    assert view["status"] == "Successful"
    assert svc.state.retry_count("contact") + svc.state.retry_count("lead") > 0

    text = everything_logged(caplog.records)
    assert TOKEN not in text
    assert "Bearer" not in text
    account_key = re.search(r"AccountKey=([^;]+)", app_env["HYDRATION_STORAGE"])
    assert account_key is not None
    assert account_key.group(1) not in text
    assert {g.lower() for g in GUID.findall(text)} & guids == set()

    step_records = [r for r in caplog.records if r.name.startswith(STEP_LOGGERS)]
    assert step_records
    for record in step_records:
        fields: dict[str, Any] = record.__dict__
        assert fields.get(RUN_ID) == started.run_id, record.getMessage()
        assert fields.get(TABLE) in ("contact", "lead"), record.getMessage()
        assert fields.get(LANE) == "hydrate"

    ends = [r.__dict__ for r in caplog.records if r.__dict__.get(EVENT) == TASK_ENDED]
    assert sorted(e[TABLE] for e in ends) == ["contact", "lead"]
    tasks = {t.table: t for t in svc.state.tasks(started.run_id)}
    for end in ends:
        assert end[STATUS] == "Successful"
        assert end[RUN_ID] == started.run_id
        assert end[ROWS_WRITTEN] == tasks[end[TABLE]].counters["written"] > 0
