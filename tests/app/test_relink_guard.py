"""The relink guard end to end: a mass re-unification is Held with nothing written, until approved.

Every run goes through the app's planner and queue handlers on the emulator and Azurite; the end state
is checked row by row against the emulator's truth, and "nothing written" against its write counters.
"""

from __future__ import annotations

import io
import json
from typing import Any

import azure.functions as func
import pytest

from dataverse_emulator.client import EmulatorClient
from hydration import handlers
from hydration.cli import main
from hydration.planner import RunRequest
from hydration.service import Services, services
from hydration.status import report
from hydration.status_page import render_page
from hydration.status_text import render
from tests.functions import app_functions

from .conftest import assert_all_correct, drain

pytestmark = pytest.mark.integration


def current_links(emulator: EmulatorClient, table: str) -> dict[str, Any]:
    """Every row's current link, by row id."""
    rows = emulator.links(table, rows="all")["rows"]
    return {row["id"]: row["current"] for row in rows}


def run(svc: Services, **options: Any) -> dict[str, Any]:
    started = svc.planner().start(RunRequest(trigger="test", **options))
    return drain(svc, started.run_id)


def tables_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["table"]: t for t in view["tables"]}


def reunified(emulator: EmulatorClient, fraction: float) -> None:
    """A re-unification that has settled (past the settle period), with the write counters at zero."""
    emulator.reunify(fraction, seed=3)
    emulator.advance_clock(16 * 60)
    emulator.reset_stats()


def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), env=env, out=out), out.getvalue()


def approve_over_http(run_id: str) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(
        method="POST",
        url=f"http://localhost/api/runs/{run_id}/approve",
        body=b"",
        route_params={"run_id": run_id},
    )
    response = app_functions()["approve_run"].get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


@pytest.fixture
def hydrated(svc: Services, emulator: EmulatorClient) -> Services:
    """The scene after a first pass, which links every row and is never held (first links only)."""
    view = run(svc)
    assert view["status"] == "Successful"
    for table in tables_of(view).values():
        assert "guard" not in table  # no links yet: not even surveyed
    assert_all_correct(emulator)
    return svc


def test_a_mass_reunification_is_held_writing_nothing_and_approval_links_every_row(
    host_env: dict[str, str], hydrated: Services, emulator: EmulatorClient
) -> None:
    before = {table: current_links(emulator, table) for table in ("contact", "lead")}
    reunified(emulator, 1.0)
    view = run(hydrated, full=True)  # a full pass: it would overwrite links and clear stale ones
    assert view["status"] == "Held"
    assert emulator.stats()["rows_written"] == {}  # nothing written, to any table
    for table, links in before.items():  # row by row: every link as it was; rows created since unlinked
        after = current_links(emulator, table)
        assert {row: after[row] for row in links} == links
        assert all(after[row] is None for row in set(after) - set(links))
    contact = tables_of(view)["contact"]
    guard = contact["guard"]
    assert contact["status"] == "Held"
    assert guard["held"] is True
    assert "HYDRATION_MAX_RELINK_SHARE" in guard["reason"]
    assert guard["relinked"] > 0.2 * guard["links"]
    assert guard["cleared"] > 0
    assert guard["links"] == sum(1 for link in before["contact"].values() if link)
    assert contact["counts"]["relinked"] == guard["relinked"]
    assert 0 < len(guard["sample"]) <= 10
    truth = {row["id"]: row for row in emulator.links("contact", rows="all")["rows"]}
    for change in guard["sample"]:
        assert before["contact"][change["row"]] == change["from"]  # the link it has
        assert truth[change["row"]]["expected"] == change["to"]  # the link it would get
    assert f"approve {view['runId']}" in contact["approve"]

    code, body = approve_over_http(view["runId"])
    assert (code, sorted(body["resumed"])) == (202, ["contact", "lead"])
    done = drain(hydrated, view["runId"])
    assert done["status"] == "Successful"
    assert_all_correct(emulator)
    written = emulator.stats()["rows_written"]
    contact = tables_of(done)["contact"]
    assert contact["counts"]["relinked"] == guard["relinked"]  # the pass it was held for, live
    counts = contact["counts"]
    assert (counts["written"], counts["cleared"]) == (guard["toWrite"], guard["cleared"])  # as counted
    assert written["contact"] == counts["written"] + counts["cleared"]  # each row written once

    assert approve_over_http(view["runId"])[0] == 409  # approving twice
    code, _ = cli(host_env, "approve", view["runId"])
    assert code == 7


def test_a_held_run_shows_in_the_status_json_the_page_and_the_cli(
    host_env: dict[str, str], hydrated: Services, emulator: EmulatorClient
) -> None:
    reunified(emulator, 1.0)
    code, out = cli(host_env, "run", "--full", "--tables", "contact")
    assert code == 6
    assert "contact: held" in out
    assert "python -m hydration approve" in out
    run_id = report(hydrated.state, now=hydrated.clock.now(), limit=1)["runs"][0]["runId"]

    status, data = handlers.on_status_request({"run": run_id}, env=host_env)
    assert (status, data["runs"][0]["status"], data["runs"][0]["ended"]) == (200, "Held", None)
    text = render(data)
    assert "Held" in text
    assert "sample of the changes" in text
    page = render_page(data, detailed=10)
    assert '<td data-col="status"><span class="status st-Held">Held</span></td>' in page
    assert '<ul class="sample"><li>' in page
    assert "approve" in page
    code, out = cli(host_env, "status", "--run", run_id)
    assert (code, "Held" in out) == (0, True)

    code, out = cli(host_env, "approve", run_id)
    assert code == 0
    assert "contact resumed" in out
    assert_all_correct(emulator, "contact")


@pytest.mark.parametrize(
    ("settings", "held"),
    [({}, False), ({"HYDRATION_MAX_RELINKS": "3"}, True), ({"HYDRATION_MAX_RELINK_SHARE": "0"}, True)],
    ids=["within the share", "over the absolute cap", "share zero"],
)
def test_a_small_reunification_goes_unless_a_tighter_limit_holds_it(
    app_env: dict[str, str], hydrated: Services, emulator: EmulatorClient, settings: dict, held: bool
) -> None:
    reunified(emulator, 0.05)
    svc = services({**app_env, **settings})
    view = run(svc, tables=("contact",))
    contact = tables_of(view)["contact"]
    assert contact["guard"]["relinked"] > 3  # the survey counted what the pass changes
    if held:
        assert view["status"] == "Held"
        assert emulator.stats()["rows_written"] == {}
        return
    assert view["status"] == "Successful"
    assert contact["guard"]["held"] is False
    assert contact["counts"]["relinked"] == contact["guard"]["relinked"]  # what it counted, it wrote
    summary = emulator.links("contact", rows="none")["summary"]
    assert summary["missing"] == summary["wrong"] == 0  # an incremental pass: stale links wait for a full one


def test_a_full_approved_run_is_never_held(
    host_env: dict[str, str], hydrated: Services, emulator: EmulatorClient
) -> None:
    reunified(emulator, 1.0)
    code, out = cli(host_env, "run", "--full", "--approve")
    assert code == 0, out
    view = report(hydrated.state, now=hydrated.clock.now(), limit=1)["runs"][0]
    assert all("guard" not in t for t in view["tables"])  # not even surveyed
    assert tables_of(view)["contact"]["counts"]["relinked"] > 0
    assert_all_correct(emulator)
    code, _ = cli(host_env, "run", "--approve")
    assert code == 2  # approve goes with a full pass only


def test_the_timer_leaves_a_held_table_and_other_runs_skip_it_until_approved(
    host_env: dict[str, str], hydrated: Services, emulator: EmulatorClient
) -> None:
    reunified(emulator, 1.0)
    held = run(hydrated, tables=("contact",))
    assert held["status"] == "Held"
    ticked = hydrated.planner().tick()
    assert ticked is not None
    assert ticked.queued == ("lead",)  # the lead owes its pass; the held contact is not re-planned
    assert drain(hydrated, ticked.run_id)["status"] == "Held"  # the lead moved as much
    assert hydrated.planner().tick() is None

    other = run(hydrated)
    assert other["status"] == "Skipped"
    for table in ("contact", "lead"):
        assert "held by the relink guard" in tables_of(other)[table]["details"]
    assert emulator.stats()["rows_written"] == {}

    replacing = run(hydrated, full=True, approve=True, tables=("contact",))  # takes the held table
    assert replacing["status"] == "Successful"
    assert_all_correct(emulator, "contact")
    replaced = tables_of(report(hydrated.state, now=hydrated.clock.now(), run_id=held["runId"])["runs"][0])[
        "contact"
    ]
    assert replaced["status"] == "Skipped"
    assert f"replaced by run {replacing['runId']}" in replaced["details"]
    code, _ = cli(host_env, "approve", held["runId"])
    assert code == 7  # nothing left to approve in it


def test_approving_what_is_not_held_answers_clearly(host_env: dict[str, str], hydrated: Services) -> None:
    done = report(hydrated.state, now=hydrated.clock.now(), limit=1)["runs"][0]["runId"]
    code, body = approve_over_http(done)
    assert code == 409
    assert "no held table" in body["error"]
    assert "contact Successful" in body["error"]
    unknown = "20200101T000000Z-0000000000ab"
    assert approve_over_http(unknown)[0] == 404
    assert approve_over_http("not-a-run")[0] == 400
    assert cli(host_env, "approve", unknown)[0] == 2
    assert cli(host_env, "approve", done)[0] == 7
