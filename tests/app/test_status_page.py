"""The live status page in a real headless Chromium, served over HTTP during a real run.

The app's ``status`` function is served by ``page_server`` on Azurite and the emulator. A run is driven
step by step through the local queue driver, so the page is read while the run is running (it must
say so, show its pace and ETA, and reload itself) and again when it is done (no reload, the chart).
Hostile text reaches the page by two real paths: an Event Grid event naming a table that is not
configured (its names are echoed in the Skipped run's details), and a task record stored under a
hostile table name with a status this version does not know. Both must render as text, and no script
may run. A screenshot of each state is kept under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dataverse_emulator.client import EmulatorClient
from hydration import handlers
from hydration.handlers import EVENT_TYPE
from hydration.planner import RunRequest
from hydration.state import TaskRecord
from hydration.statuses import Status

from .conftest import assert_all_correct, drain, one_page_steps, queue_driver
from .page_server import serving

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE_TABLE = "x\"'><script>document.title='pwned'<img src=x onerror=\"document.title='pwned'\">"
"""No ``/``, ``\\``, ``#`` or ``?``: Table Storage refuses those in a row key, so this name can be stored."""
HOSTILE_RUN = "20991231T235959Z-0000000aa"
HOSTILE_EVENT_TABLE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (``make test`` installs both)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any dialog (an ``alert`` would mean a script ran)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert dialogs == [], f"a script ran: {dialogs}"


def status_json(base: str, **params: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with urllib.request.urlopen(f"{base}/api/status?{query}", timeout=30) as answer:  # noqa: S310 - local
        data: dict[str, Any] = json.loads(answer.read())
    return data


def cell(page: Page, table: str, column: str) -> str:
    return page.locator(f'tr.task[data-table="{table}"] td[data-col="{column}"]').first.inner_text()


def number(text: str) -> float:
    return float(text.replace(",", "").split()[0])


def test_the_page_follows_a_real_run_and_renders_hostile_names_as_text(
    host_env: dict[str, str], page: Page, emulator: EmulatorClient
) -> None:
    svc = one_page_steps(host_env)
    handlers.on_event(EVENT_TYPE, {"tables": [HOSTILE_EVENT_TABLE]}, svc)
    started = svc.planner().start(RunRequest(trigger="http"))
    driver = queue_driver(svc)
    for _ in range(4):  # a few steps: contact and lead under way, neither done
        driver.step()
    ARTIFACTS.mkdir(exist_ok=True)
    with serving() as base:
        running = {t["table"]: t for t in status_json(base, run=started.run_id)["runs"][0]["tables"]}
        assert running["contact"]["status"] == Status.RUNNING, running["contact"]
        answer = page.goto(f"{base}/api/status?format=html")
        assert answer is not None
        assert answer.status == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        _check_running(page, running["contact"])
        page.screenshot(path=str(ARTIFACTS / "status-page-running.png"), full_page=True)

        before = number(cell(page, "contact", "pages"))
        driver.step()
        driver.step()
        with page.expect_navigation(timeout=15_000):  # the meta refresh reloads the page by itself
            pass
        assert number(cell(page, "contact", "pages")) > before

        view = drain(svc, started.run_id)
        assert view["status"] == Status.SUCCESSFUL
        assert_all_correct(emulator)
        _store_hostile_task(svc)
        page.goto(f"{base}/api/status?format=html")
        done = status_json(base)
        _check_done(page, done, started.run_id)
        _check_hostile(page)
        page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)


def _check_running(page: Page, contact: dict[str, Any]) -> None:
    """While the run runs: the page says so, reloads itself, and shows the table's live figures."""
    assert page.locator("#page-state").get_attribute("data-active") == "true"
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    assert cell(page, "contact", "status") == "Running"
    assert number(cell(page, "contact", "pages")) == contact["counts"]["pages"] > 0
    assert number(cell(page, "contact", "rows-read")) == contact["counts"]["rows_read"] > 0
    assert number(cell(page, "contact", "rows-per-second")) > 0
    progress = contact["progress"]
    assert (progress["mappingRowsLeft"] or 0) > 0, progress
    assert cell(page, "contact", "eta").endswith(("s", "min")), cell(page, "contact", "eta")
    assert cell(page, "contact", "phase") in ("retry", "mapping")


def _check_done(page: Page, data: dict[str, Any], run_id: str) -> None:
    """When done: no reload, final statuses, and one bar per run that could write, with its count."""
    assert page.locator("#page-state").get_attribute("data-active") == "false"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    section = page.locator(f'section.run[data-run="{run_id}"]')
    assert section.locator("h2 .status").inner_text() == "Successful"
    assert section.locator('tr.task[data-table="contact"] td[data-col="eta"]').inner_text() == ""
    (run,) = [r for r in data["runs"] if r["runId"] == run_id]
    bars = page.locator("#history-chart rect.bar")
    assert bars.count() == sum(1 for r in data["runs"] if not r["plan"])
    bar = page.locator(f'#history-chart rect.bar[data-run="{run_id}"]')
    assert int(bar.get_attribute("data-written") or -1) == run["counts"]["written"] > 0
    assert f"{run['counts']['written']:,} rows written" in bar.locator("title").text_content()


def _store_hostile_task(svc: Any) -> None:
    """A run whose task was stored under a hostile name, with a status this version does not know."""
    run_id = HOSTILE_RUN
    svc.state.create_run(run_id, trigger="event", started=svc.clock.now())
    svc.state.put_task(TaskRecord(run_id=run_id, table=HOSTILE_TABLE, status="Held", details=HOSTILE_TABLE))


def _check_hostile(page: Page) -> None:
    """Hostile names show as the text they are; nothing they carry became an element or ran."""
    assert page.title() == "CustomerId Backstamping Hydration"
    assert page.evaluate("document.querySelectorAll('script, img, iframe, object').length") == 0
    held = page.locator(f'section.run[data-run="{HOSTILE_RUN}"]')
    assert held.locator("h2 .status").inner_text() == "Held"  # a status this version does not know
    hostile_row = held.locator("tr.task")
    assert hostile_row.locator('td[data-col="table"]').inner_text() == HOSTILE_TABLE
    assert hostile_row.locator('td[data-col="status"]').inner_text() == "Held"
    assert page.get_by_text(HOSTILE_EVENT_TABLE, exact=False).count() >= 1
