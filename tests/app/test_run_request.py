"""Run requests read strictly, and the tables they select among the manifest's (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hydration.manifest import parse
from hydration.run_request import RunRequest, RunRequestError, parse_request, select_tables

MANIFEST = parse(
    json.dumps(
        {
            "version": 1,
            "organizationUrl": "https://contoso.crm.dynamics.com",
            "outputMode": "dataverse",
            "environmentType": "individuals",
            "tables": [
                {"dataSource": "S", "entity": e, "connector": "Dataverse", "primaryKey": f"{e}id"}
                for e in ("contact", "lead")
            ],
        }
    )
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, RunRequest(trigger="t")),
        ({}, RunRequest(trigger="t")),
        ({"full": True, "plan": True}, RunRequest(trigger="t", full=True, plan=True)),
        ({"full": True, "approve": True}, RunRequest(trigger="t", full=True, approve=True)),
        ({"tables": [" Lead ", "contact", "lead"]}, RunRequest(trigger="t", tables=("lead", "contact"))),
    ],
)
def test_a_request_reads_its_options(data: Any, expected: RunRequest) -> None:
    assert parse_request(data, trigger="t") == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"tables": []}, "'tables' is empty: name at least one table, or leave it out"),
        ({"tables": ["contact", 3]}, "must be a list of table logical names"),
        ({"tables": ["t"] * 201}, "must be a list of table logical names"),
        ({"plan": 1}, "'plan' must be true or false"),
        ({"table": ["contact"]}, "unknown request keys ['table']"),
    ],
)
def test_a_malformed_request_is_refused(data: Any, message: str) -> None:
    with pytest.raises(RunRequestError) as raised:
        parse_request(data, trigger="t")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("tables", "expected"),
    [(None, ["contact", "lead"]), (("lead",), ["lead"]), (("lead", "contact"), ["contact", "lead"])],
)
def test_a_request_selects_configured_tables_in_the_manifests_order(
    tables: tuple[str, ...] | None, expected: list[str]
) -> None:
    assert select_tables(MANIFEST, tables) == expected


def test_a_table_the_manifest_does_not_configure_is_refused() -> None:
    with pytest.raises(RunRequestError, match="not configured in the manifest: account; configured tables"):
        select_tables(MANIFEST, ("account",))


@pytest.mark.parametrize(
    ("data", "trigger", "message"),
    [
        ({"approve": True}, "http", "'approve' applies to a full live pass"),
        ({"approve": True, "full": True, "plan": True}, "http", "'approve' applies to a full live pass"),
        ({"approve": "yes", "full": True}, "http", "'approve' must be true or false"),
        ({"approve": True, "full": True}, "event", "an event cannot approve"),
    ],
)
def test_approve_goes_with_a_full_live_pass_asked_for_by_an_operator(
    data: Any, trigger: str, message: str
) -> None:
    with pytest.raises(RunRequestError, match=message):
        parse_request(data, trigger=trigger)
