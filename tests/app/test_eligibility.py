"""Every eligibility rule through the planner against the emulator: Skipped outcomes with their message."""

from __future__ import annotations

from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.manifest import RUN_SKIPPED_LAKE, RUN_SKIPPED_NONE
from hydration.planner import RunRequest
from hydration.service import Services, services

from ..conftest import CONTACTS, LEADS, SEED
from .conftest import assert_all_correct, drain, manifest

pytestmark = pytest.mark.integration

SALES = {
    "dataSource": "DataverseSales",
    "entity": "contact",
    "connector": "Dataverse",
    "primaryKey": "contactid",
}
MARKETING = {**SALES, "dataSource": "DataverseMarketing"}
LEAD = {"dataSource": "DataverseSales", "entity": "lead", "connector": "Dataverse", "primaryKey": "leadid"}


def with_manifest(
    app_env: dict[str, str], emulator: EmulatorClient, tables: list[dict[str, Any]], **top: Any
) -> Services:
    import json

    return services(
        {**app_env, "HYDRATION_MANIFEST": json.dumps(manifest(emulator.base_url, tables=tables, **top))}
    )


def start(svc: Services) -> tuple[Any, dict[str, Any]]:
    started = svc.planner().start(RunRequest(trigger="test"))
    tasks = {t.table: t for t in svc.state.tasks(started.run_id)}
    return started, tasks


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**LEAD, "sourceOrganizationUrl": "https://fabrikam.crm.dynamics.com"},
            "another Dataverse organization",
        ),
        ({**LEAD, "connector": "Salesforce"}, "'Salesforce' connector"),
        ({**LEAD, "unified": False}, "not part of unification"),
        (
            {**LEAD, "primaryKey": "emailaddress1"},
            "(emailaddress1) is not the primary key of the Dataverse table lead",
        ),
        ({**LEAD, "dataverseTable": "nosuchtable"}, "'nosuchtable' does not exist in the organization"),
    ],
)
def test_each_table_rule_skips_the_table_with_its_message_and_the_rest_runs(
    app_env: dict[str, str], emulator: EmulatorClient, entry: dict[str, Any], expected: str
) -> None:
    svc = with_manifest(app_env, emulator, [SALES, MARKETING, entry])
    started, tasks = start(svc)
    skipped = entry.get("dataverseTable", "lead")
    assert started.queued == ("contact",)
    assert tasks[skipped].status == "Skipped"
    assert expected in tasks[skipped].details
    view = drain(svc, started.run_id)
    assert view["status"] == "Successful"  # Skipped tables do not fail a run
    assert_all_correct(emulator, "contact")
    assert emulator.stats()["rows_written"].get("lead", 0) == 0  # nothing written to leads


def test_the_sample_check_skips_a_table_whose_mapping_names_other_rows(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    # The manifest says these contact keys are leads: the sample check finds no such lead rows.
    svc = with_manifest(app_env, emulator, [{**SALES, "dataverseTable": "lead", "primaryKey": "leadid"}])
    started, tasks = start(svc)
    assert started.status == "Skipped"
    details = tasks["lead"].details
    assert tasks["lead"].status == "Skipped"
    assert "only 0 of 200 sampled mapping rows (0%) name an existing lead row" in details
    assert "(200 name no row, 0 are not GUIDs), below HYDRATION_SAMPLE_MIN_MATCH (10%)" in details
    assert "may not be the table's primary key" in details
    assert "another Dataverse organization" in details


@pytest.mark.parametrize("share", [0.0, 0.15, 0.4])
def test_a_table_with_deleted_rows_proceeds_and_links_every_live_row(
    app_env: dict[str, str], emulator: EmulatorClient, share: float
) -> None:
    seeded = emulator.reset(contacts=CONTACTS, leads=LEADS, seed=SEED, orphans={"lead": share})["seeded"]
    emulator.advance_clock(16 * 60)
    orphans = seeded["orphaned_lead"]
    mapped = orphans + emulator.links("lead", rows="none")["summary"]["expected_links"]
    assert orphans == round(share * mapped)  # one mapping row per lead; some leads were never mapped
    svc = with_manifest(app_env, emulator, [LEAD])
    started, _ = start(svc)
    assert started.queued == ("lead",)
    run = svc.state.run(started.run_id)
    assert run is not None
    if orphans:
        assert f"{orphans} of {mapped} sampled mapping rows name no lead row" in run["details"]
    view = drain(svc, started.run_id)
    assert view["status"] == "Successful"
    (lead,) = view["tables"]
    assert f"{orphans} without a source row" in lead["details"]
    truth = emulator.links("lead", rows="all")
    assert truth["summary"]["rows"] == LEADS - orphans
    for row in truth["rows"]:  # every live row, one by one: linked as the mapping says, or unmapped
        assert row["outcome"] == "correct", row
        assert row["current"] == row["expected"], row
    assert sum(1 for row in truth["rows"] if row["current"]) == mapped - orphans


def test_values_that_are_not_guids_skip_the_table_with_the_figures(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    # The loyalty platform's member ids, said to be the lead key: no value is a GUID.
    members = {"dataSource": "LoyaltyPlatform", "entity": "Members", "connector": "Dataverse"}
    svc = with_manifest(app_env, emulator, [{**members, "dataverseTable": "lead", "primaryKey": "leadid"}])
    started, tasks = start(svc)
    assert started.status == "Skipped"
    details = tasks["lead"].details
    assert "sampled mapping rows (0%) name an existing lead row" in details
    assert "are not GUIDs), below HYDRATION_SAMPLE_MIN_MATCH (10%)" in details
    assert "cannot be the table's primary key leadid" in details


@pytest.mark.parametrize("sample_size", ["200", "0"])
def test_a_source_with_no_mapping_rows_is_skipped_by_name(
    app_env: dict[str, str], emulator: EmulatorClient, sample_size: str
) -> None:
    typo = {**LEAD, "dataSource": "DataverseSale"}
    svc = with_manifest({**app_env, "HYDRATION_SAMPLE_SIZE": sample_size}, emulator, [typo, SALES])
    started, tasks = start(svc)
    assert started.queued == ("contact",)  # even with the sample off: nothing to link, said so
    assert tasks["lead"].status == "Skipped"
    assert "DataverseSale/lead is skipped because the mapping table" in tasks["lead"].details
    assert "msdynci_datasourcename 'DataverseSale'" in tasks["lead"].details


def test_an_ineligible_source_is_left_out_of_an_eligible_table(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    svc = with_manifest(app_env, emulator, [SALES, {**MARKETING, "connector": "CSV"}])
    started, tasks = start(svc)
    assert started.queued == ("contact",)
    assert tasks["contact"].sources == [["DataverseSales", "contact"]]
    run = svc.state.run(started.run_id)
    assert run is not None
    assert "DataverseMarketing/contact is skipped" in run["details"]


def test_no_eligible_table_skips_the_run_with_the_known_message(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    svc = with_manifest(app_env, emulator, [SALES, LEAD], environmentType="accounts")
    started, tasks = start(svc)
    assert started.status == "Skipped"
    assert started.details == RUN_SKIPPED_NONE
    assert {t.status for t in tasks.values()} == {"Skipped"}
    assert all("business accounts (B2B)" in t.details for t in tasks.values())
    assert svc.queue.approximate_count() == 0
    view = drain(svc, started.run_id)
    assert view["status"] == "Skipped"


def test_a_private_data_lake_skips_the_whole_run(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    svc = with_manifest(app_env, emulator, [SALES], outputMode="privateDataLake")
    started, tasks = start(svc)
    assert started.status == "Skipped"
    assert started.details == RUN_SKIPPED_LAKE
    assert tasks == {}
    assert emulator.stats()["requests"] == {}  # decided from the manifest alone


def test_an_invalid_manifest_fails_the_run_with_the_schema_errors(app_env: dict[str, str]) -> None:
    svc = services({**app_env, "HYDRATION_MANIFEST": '{"version": 1, "tables": []}'})
    started = svc.planner().start(RunRequest(trigger="test"))
    assert started.status == "Failed"
    assert "manifest: 'organizationUrl' is a required property" in started.details
    run = svc.state.run(started.run_id)
    assert run is not None
    assert run["status"] == "Failed"


def test_entries_feeding_one_table_become_one_task(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    svc = with_manifest(app_env, emulator, [SALES, LEAD, MARKETING])
    started, tasks = start(svc)
    assert started.queued == ("contact", "lead")
    assert sorted(tasks["contact"].sources) == [
        ["DataverseMarketing", "contact"],
        ["DataverseSales", "contact"],
    ]
    assert svc.queue.approximate_count() == 2  # one message per eligible table


def test_a_large_sample_is_looked_up_in_chunks_within_the_url_limit(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    emulator.reset(contacts=1200, leads=10, seed=SEED)
    emulator.advance_clock(16 * 60)
    svc = with_manifest({**app_env, "HYDRATION_SAMPLE_SIZE": "1000"}, emulator, [SALES])
    started, _ = start(svc)
    assert (started.status, started.queued) == ("Running", ("contact",))  # was Failed: 414 on one In query
    assert emulator.stats()["statuses"].get("414", 0) == 0
    assert emulator.stats()["requests"]["query"] == 1 + 5  # the sample, then 1000 keys 200 at a time
