"""The manifest: schema validation with clear errors, and the rules it settles on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hydration.manifest import (
    RUN_SKIPPED_LAKE,
    ManifestError,
    entry_problem,
    parse,
    primary_key_problem,
    run_problem,
)

ORG = "https://contoso.crm.dynamics.com"
ROOT = Path(__file__).resolve().parents[2]


def entry(**fields: Any) -> dict[str, Any]:
    base = {
        "dataSource": "DataverseSales",
        "entity": "contact",
        "connector": "Dataverse",
        "primaryKey": "contactid",
    }
    return {**base, **fields}


def text(*entries: dict[str, Any], **top: Any) -> str:
    data = {
        "version": 1,
        "organizationUrl": ORG,
        "outputMode": "dataverse",
        "environmentType": "individuals",
        "tables": list(entries),
        **top,
    }
    return json.dumps(data)


def test_a_valid_manifest_groups_entries_by_dataverse_table() -> None:
    manifest = parse(
        text(entry(), entry(dataSource="DataverseMarketing"), entry(entity="lead", primaryKey="leadid"))
    )
    assert manifest.tables == ["contact", "lead"]
    assert [e.source for e in manifest.entries_of("contact")] == [
        ("DataverseSales", "contact"),
        ("DataverseMarketing", "contact"),
    ]
    assert manifest.entries_of("contact")[0].source_organization == ORG


def test_the_sample_manifest_is_valid() -> None:
    manifest = parse((ROOT / "manifest.sample.json").read_text())
    assert manifest.tables == ["contact", "lead", "members"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "is not of type 'object'"),
        (text(version=2), "manifest.version: 1 was expected"),
        (text(entry(connector=7)), "manifest.tables[0].connector: 7 is not of type 'string'"),
        (text(entry(dataverseTable="Contact")), "manifest.tables[0].dataverseTable"),
        (text(entry(dataSource="x'); drop")), "manifest.tables[0].dataSource"),
        (text(entry(extra=True)), "Additional properties are not allowed"),
        (text(outputMode="lake"), "manifest.outputMode"),
        (text(entry(), organizationUrl="javascript:alert(1)"), "manifest.organizationUrl"),
        (text(entry(), entry()), "listed twice"),
        (text(entry(entity="My Contacts")), "is not a Dataverse logical name; give dataverseTable"),
    ],
)
def test_invalid_manifests_say_what_and_where(document: str, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(document, source="HYDRATION_MANIFEST")
    assert expected in str(caught.value)
    assert "HYDRATION_MANIFEST" in str(caught.value)


def test_a_non_dataverse_entry_without_a_logical_name_is_kept_to_be_skipped() -> None:
    manifest = parse(text(entry(dataSource="Loyalty", entity="Loyalty Members", connector="CSV")))
    assert manifest.tables == ["loyalty_members"]
    problem = entry_problem(manifest.entries[0], manifest)
    assert problem is not None
    assert "'CSV' connector" in problem


def test_run_level_rules() -> None:
    lake = parse(text(entry(), outputMode="privateDataLake"))
    assert run_problem(lake, ORG) == ("Skipped", RUN_SKIPPED_LAKE)
    assert RUN_SKIPPED_LAKE.startswith("Linking of Dataverse tables to the CustomerProfile table is skipped.")
    other = parse(text(entry()))
    failed = run_problem(other, "https://fabrikam.crm.dynamics.com")
    assert failed is not None
    assert failed[0] == "Failed"
    assert "fabrikam" in failed[1]
    assert run_problem(other, "https://CONTOSO.crm.dynamics.com/") is None


@pytest.mark.parametrize(
    ("fields", "top", "expected"),
    [
        (
            {"sourceOrganizationUrl": "https://fabrikam.crm.dynamics.com"},
            {},
            "another Dataverse organization",
        ),
        (
            {"connector": "Azure Data Lake Storage"},
            {},
            "ingested through the 'Azure Data Lake Storage' connector",
        ),
        ({"unified": False}, {}, "not part of unification"),
        ({}, {"environmentType": "accounts"}, "business accounts (B2B)"),
    ],
)
def test_entry_rules_and_their_messages(fields: dict[str, Any], top: dict[str, Any], expected: str) -> None:
    manifest = parse(text(entry(**fields), **top))
    problem = entry_problem(manifest.entries[0], manifest)
    assert problem is not None
    assert expected in problem
    assert problem.startswith("DataverseSales/contact is skipped because")


@pytest.mark.parametrize(
    "connector", ["Dataverse", "dataverse", "Power Query Dataverse", "PowerQueryDataverse"]
)
def test_dataverse_connectors_are_eligible(connector: str) -> None:
    manifest = parse(text(entry(connector=connector)))
    assert entry_problem(manifest.entries[0], manifest) is None


def test_primary_key_rule() -> None:
    manifest = parse(text(entry(primaryKey="emailaddress1")))
    problem = primary_key_problem(manifest.entries[0], "contactid")
    assert problem is not None
    assert "(emailaddress1) is not the primary key of the Dataverse table contact (contactid)" in problem
    assert primary_key_problem(parse(text(entry(primaryKey="ContactId"))).entries[0], "contactid") is None


@pytest.mark.parametrize(
    ("fields", "top"),
    [
        ({"dataSource": "DataverseSales\n"}, {}),  # a trailing newline: Python's $ would let it through
        ({"entity": "contact\n"}, {}),
        ({"dataverseTable": "contact\n"}, {}),
        ({"dataSource": "Dataverse\nSales"}, {}),
        ({"dataSource": "DataverseSales\r"}, {}),
        ({"connector": "Dataverse\n"}, {}),
        ({"connector": "Data\x00verse"}, {}),
        ({"primaryKey": "contactid\n"}, {}),
        ({"primaryKey": "contact\tid"}, {}),
        ({"primaryKey": "contactid\u2028"}, {}),
        ({"sourceOrganizationUrl": ORG + "\n"}, {}),
        ({}, {"organizationUrl": ORG + "\n"}),
        ({}, {"organizationUrl": ORG + "/\n"}),
    ],
)
def test_schema_patterns_match_whole_values_without_control_characters(
    fields: dict[str, Any], top: dict[str, Any]
) -> None:
    with pytest.raises(ManifestError, match="does not follow the manifest schema"):
        parse(text(entry(**fields), **top))


@pytest.mark.parametrize(
    "fields",
    [
        {"dataSource": "Dataverse Sales-2.eu"},
        {"connector": "Power Query Dataverse"},
        {"primaryKey": "Member Id (ünïcode)"},
        {"sourceOrganizationUrl": "http://127.0.0.1:8080/"},
    ],
)
def test_strict_patterns_still_accept_ordinary_values(fields: dict[str, Any]) -> None:
    assert parse(text(entry(**fields))).entries
