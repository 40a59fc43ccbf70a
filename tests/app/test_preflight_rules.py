"""The preflight's pure rules: which steps and flows a lookup write fires, privileges, the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataverse_emulator.events import flow_clientdata
from hydration.first_pass_estimate import (
    BENCHMARK_ROWS_PER_SECOND_PER_USER,
    duration_text,
    first_pass_seconds,
)
from hydration.preflight_rules import (
    FlowTrigger,
    PluginStep,
    PrivilegeNeed,
    UnreadableFlow,
    depth_name,
    flow_fires,
    flow_triggers,
    missing_privileges,
    step_fires,
    step_from_row,
)

LOOKUP = "msdynci_lookupfield_customerprofile"
ROOT = Path(__file__).resolve().parents[2]


def step(filtering: str | None = None, *, statecode: int = 0, level: int = 1) -> PluginStep:
    row = {"name": "s", "stage": 20, "mode": 0, "filteringattributes": filtering, "statecode": statecode}
    found = step_from_row({**row, "customizationlevel": level}, "Update")
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("filtering", "statecode", "fires"),
    [
        (None, 0, True),  # no filter: every update
        ("", 0, True),
        ("firstname,lastname", 0, False),
        ("firstname, MSDYNCI_LOOKUPFIELD_CUSTOMERPROFILE", 0, True),  # spaces and case do not matter
        (f"{LOOKUP}pid", 0, True),  # the partition id column is written with the lookup
        (None, 1, False),  # disabled steps do not run
        (LOOKUP, 1, False),
    ],
)
def test_a_step_fires_when_enabled_and_unfiltered_or_filtered_on_the_lookup(
    filtering: str | None, statecode: int, fires: bool
) -> None:
    assert step_fires(step(filtering, statecode=statecode), LOOKUP) is fires


def test_step_rows_name_stage_and_mode_and_tell_custom_from_microsoft() -> None:
    found = step("a,b", level=0)
    assert (found.stage_name, found.mode_name, found.filtering, found.custom) == (
        "PreOperation",
        "sync",
        ("a", "b"),
        False,
    )
    assert step_from_row({"name": "x", "stage": "20", "mode": 0}, "Update") is None
    assert PluginStep("n", "Update", 40, 1, (), True, True).stage_name == "PostOperation"
    assert PluginStep("n", "Update", 10, 1, (), True, True).mode_name == "async"


@pytest.mark.parametrize(
    ("change", "filtering", "table", "fires"),
    [
        (3, None, "contact", True),  # modified
        (4, None, "contact", True),  # added or modified
        (6, None, "contact", True),
        (7, None, "contact", True),
        (1, None, "contact", False),  # added only
        (2, None, "contact", False),  # deleted only
        (5, None, "contact", False),  # added or deleted
        (3, "firstname", "contact", False),
        (3, f"firstname,{LOOKUP}", "contact", True),
        (3, None, "lead", False),  # another table's flow
    ],
)
def test_a_flow_fires_on_modifications_of_its_table_unfiltered_or_filtered_on_the_lookup(
    change: int, filtering: str | None, table: str, fires: bool
) -> None:
    (trigger,) = flow_triggers("f", flow_clientdata(table, change, filtering))
    assert isinstance(trigger, FlowTrigger)
    assert flow_fires(trigger, "contact", LOOKUP) is fires


@pytest.mark.parametrize(
    "clientdata",
    [
        None,
        "",
        "{not json",
        "[]",
        json.dumps({"properties": {}}),
        json.dumps({"properties": {"definition": 3}}),
    ],
)
def test_a_definition_that_cannot_be_read_is_reported_never_a_crash(clientdata: object) -> None:
    found = flow_triggers("Broken", clientdata)
    assert isinstance(found, UnreadableFlow)
    assert found.flow == "Broken"
    assert found.reason


def test_a_dataverse_trigger_without_a_table_is_unreadable_and_other_triggers_are_ignored() -> None:
    data = json.loads(flow_clientdata("contact", 3, None))
    trigger = data["properties"]["definition"]["triggers"]["When_a_row_is_added,_modified_or_deleted"]
    del trigger["inputs"]["parameters"]["subscriptionRequest/entityname"]
    assert isinstance(flow_triggers("f", json.dumps(data)), UnreadableFlow)
    recurrence = {"triggers": {"Recurrence": {"type": "Recurrence", "recurrence": {"frequency": "Day"}}}}
    assert flow_triggers("daily", json.dumps({"properties": {"definition": recurrence}})) == []
    trigger["inputs"]["parameters"]["subscriptionRequest/entityname"] = "Contact"
    trigger["inputs"]["parameters"]["subscriptionRequest/message"] = "4"  # a string is read as its number
    (parsed,) = flow_triggers("f", json.dumps(data))
    assert isinstance(parsed, FlowTrigger)
    assert (parsed.table, parsed.change_type) == ("contact", 4)


def test_missing_and_shallow_privileges() -> None:
    needs = [
        PrivilegeNeed("prvReadContact", "read contact"),
        PrivilegeNeed("prvWriteContact", "write contact"),
    ]
    absent, shallow = missing_privileges({"prvReadContact": "Local"}, needs)
    assert [n.name for n in absent] == ["prvWriteContact"]
    assert [(n.name, d) for n, d in shallow] == [("prvReadContact", "Local")]
    assert missing_privileges({"prvReadContact": "Global", "prvWriteContact": "Global"}, needs) == ([], [])
    assert (depth_name(3), depth_name("Deep"), depth_name(1)) == ("Global", "Deep", "Local")


@pytest.mark.parametrize(
    ("rows", "users", "rate", "seconds"),
    [
        (0, 1, 393.0, 0.0),
        (393_000, 1, 393.0, 1000.0),
        (393_000, 4, 393.0, 250.0),
        (1_000_000, 2, 500.0, 1000.0),
    ],
)
def test_first_pass_seconds(rows: int, users: int, rate: float, seconds: float) -> None:
    assert first_pass_seconds(rows, users, rate) == pytest.approx(seconds)


@pytest.mark.parametrize(("rows", "users", "rate"), [(-1, 1, 1.0), (1, 0, 1.0), (1, 1, 0.0)])
def test_first_pass_seconds_refuses_nonsense(rows: int, users: int, rate: float) -> None:
    with pytest.raises(ValueError, match="rows must be"):
        first_pass_seconds(rows, users, rate)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "under a minute"),
        (60, "about 1 minute"),
        (61, "about 2 minutes"),
        (3600, "about 1 h"),
        (4000, "about 1 h 7 min"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_the_default_rate_is_the_benchmarks_measured_one_user_full_pass() -> None:
    results = json.loads((ROOT / "bench" / "last-run-200k.json").read_text(encoding="utf-8"))["results"]
    (one_user,) = [r for r in results if r["scenario"] == "full pass" and r["users"] == 1]
    assert one_user["rows_per_second"] == BENCHMARK_ROWS_PER_SECOND_PER_USER
