"""Writes over HTTP: PATCH binds and upserts, clearing, partition ids, UpdateMultiple, create, delete."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi
from tests.emulator.lookups import create_lookup

CONTACTS, LEADS, SEED = 60, 30, 7
PROFILES = "msdynci_customerprofiles"
NAV = "new_CustomerProfile"
VALUE = "_new_customerprofile_value"
PID = "new_customerprofilepid"
CID_NAV = "msdynci_lookupfield_customerprofile"
CONTACT_TYPE = "Microsoft.Dynamics.CRM.contact"
SELECT = f"$select=contactid,{VALUE},{PID},modifiedon,fullname,statecode"

UNDECLARED = (
    "Error identified in Payload provided by the user for Entity :'contacts'  ---->  InnerException : "
    "Microsoft.OData.ODataException: An undeclared property '{name}' which only has property annotations in "
    "the payload but no property value was found in the payload. In OData, only declared navigation "
    "properties and declared named streams can be represented as properties without values."
)
BIND_NULL_REFUSED = (
    "An error occurred while validating input parameters: Microsoft.OData.ODataException: The 'odata.bind' "
    "instance or property annotation has a null value. In OData, the 'odata.bind' instance or property "
    "annotation must have a non-null string value."
)


def invalid_property(name: str) -> str:
    return (
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property "
        f"'{name}' was found in entity 'Microsoft.Dynamics.CRM.contact'."
    )


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorClient:
    """Overrides the shared fixture with a smaller scene: the tests touch few rows, and it resets faster."""
    client = EmulatorClient(emulator_server.base_url)
    client.reset(contacts=CONTACTS, leads=LEADS, seed=SEED)
    return client


def profiles(api: WebApi) -> list[dict[str, Any]]:
    response = api.get(f"{PROFILES}?$select=msdynci_customerprofileid,partitionid")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["value"]
    assert len(rows) > 10
    return rows


def contact_ids(api: WebApi) -> list[str]:
    response = api.get("contacts?$select=contactid")
    assert response.status_code == 200, response.text
    ids = [row["contactid"] for row in response.json()["value"]]
    assert len(ids) == CONTACTS
    return ids


def read(api: WebApi, contact: str, select: str = SELECT) -> dict[str, Any]:
    response = api.get(f"contacts({contact})?{select}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def version(row: dict[str, Any]) -> int:
    tag = row["@odata.etag"]
    assert tag.startswith('W/"')
    assert tag.endswith('"')
    return int(tag[3:-1])


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}
    return response.status_code, body["error"]["code"], body["error"]["message"]


def bind(profile: str) -> dict[str, str]:
    return {f"{NAV}@odata.bind": f"{PROFILES}({profile})"}


def patch(api: WebApi, contact: str, body: Any, **headers: str) -> Any:
    return api.patch(f"contacts({contact})", json=body, headers={"If-Match": "*", **headers})


def written(emulator: EmulatorClient, table: str = "contact") -> int:
    return int(emulator.stats()["rows_written"].get(table, 0))


@pytest.fixture
def scene(api: WebApi) -> tuple[list[str], list[str]]:
    """The lookup exists; answers the contact ids and profile ids."""
    create_lookup(api)
    return contact_ids(api), [p["msdynci_customerprofileid"] for p in profiles(api)]


# -- PATCH with a bind ------------------------------------------------------------------------------


def test_bind_sets_lookup_moves_modifiedon_and_grows_version(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    contact, profile = contacts[0], profile_ids[0]
    before = read(api, contact)
    assert before[VALUE] is None
    emulator.advance_clock(5)
    response = patch(api, contact, bind(profile))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["OData-EntityId"] == f"{api.api_url}contacts({contact})"
    assert response.headers["OData-Version"] == "4.0"
    after = read(api, contact)
    assert after[VALUE] == profile
    assert after[PID] is None
    assert after["modifiedon"] > before["modifiedon"]
    assert version(after) > version(before)
    assert after["fullname"] == before["fullname"]
    assert emulator.links("contact", rows="none")["summary"]["rows"] == CONTACTS


@pytest.mark.parametrize("form", ["plain", "leading_slash", "absolute", "uppercase_guid"])
def test_bind_forms(api: WebApi, scene: tuple[list[str], list[str]], form: str) -> None:
    contacts, profile_ids = scene
    profile = profile_ids[3]
    value = {
        "plain": f"{PROFILES}({profile})",
        "leading_slash": f"/{PROFILES}({profile})",
        "absolute": f"{api.api_url}{PROFILES}({profile})",
        "uppercase_guid": f"{PROFILES}({profile.upper()})",
    }[form]
    response = patch(api, contacts[1], {f"{NAV}@odata.bind": value})
    assert response.status_code == 204, response.text
    assert read(api, contacts[1])[VALUE] == profile


def test_missing_row_with_if_match_is_404_and_creates_nothing(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    _, profile_ids = scene
    missing = str(uuid.uuid4())
    emulator.reset_stats()
    response = patch(api, missing, bind(profile_ids[0]))
    assert error(response) == (404, "0x80040217", f"contact With Id = {missing} Does Not Exist")
    assert error(api.get(f"contacts({missing})"))[0] == 404
    assert len(contact_ids(api)) == CONTACTS
    assert written(emulator) == 0


def test_patch_without_if_match_upserts(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    _, profile_ids = scene
    new = str(uuid.uuid4())
    emulator.reset_stats()
    response = api.patch(f"contacts({new})", json={**bind(profile_ids[2]), "fullname": "Upserted Person"})
    assert response.status_code == 204, response.text
    assert response.headers["OData-EntityId"] == f"{api.api_url}contacts({new})"
    row = read(api, new)
    assert row["contactid"] == new
    assert row[VALUE] == profile_ids[2]
    assert row["fullname"] == "Upserted Person"
    assert row["statecode"] == 0
    assert written(emulator) == 1
    assert len(contact_ids_all(api)) == CONTACTS + 1


def contact_ids_all(api: WebApi) -> list[str]:
    return [row["contactid"] for row in api.get("contacts?$select=contactid").json()["value"]]


def test_if_none_match_on_existing_row_is_412(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    before = read(api, contacts[0])
    response = api.patch(
        f"contacts({contacts[0]})", json=bind(profile_ids[0]), headers={"If-None-Match": "*"}
    )
    assert error(response) == (412, "0x80040237", "A record with matching key values already exists.")
    assert read(api, contacts[0]) == before


def test_if_none_match_on_missing_row_creates_it(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    _, profile_ids = scene
    new = str(uuid.uuid4())
    response = api.patch(f"contacts({new})", json=bind(profile_ids[0]), headers={"If-None-Match": "*"})
    assert response.status_code == 204, response.text
    assert read(api, new)[VALUE] == profile_ids[0]


def test_stale_if_match_is_412_and_current_etag_succeeds(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    contact = contacts[4]
    stale = read(api, contact)
    assert patch(api, contact, {"fullname": "First Change"}).status_code == 204
    current = read(api, contact)
    assert current["@odata.etag"] != stale["@odata.etag"]
    for tag in (stale["@odata.etag"], 'W/"1"'):
        response = api.patch(f"contacts({contact})", json=bind(profile_ids[0]), headers={"If-Match": tag})
        assert error(response) == (
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
        )
    assert read(api, contact) == current
    response = api.patch(
        f"contacts({contact})", json=bind(profile_ids[0]), headers={"If-Match": current["@odata.etag"]}
    )
    assert response.status_code == 204, response.text
    assert read(api, contact)[VALUE] == profile_ids[0]


def test_bind_to_missing_profile_is_404(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    ghost = str(uuid.uuid4())
    before = read(api, contacts[0])
    emulator.reset_stats()
    response = patch(api, contacts[0], bind(ghost))
    assert error(response) == (404, "0x80040217", f"msdynci_customerprofile With Id = {ghost} Does Not Exist")
    assert read(api, contacts[0]) == before
    assert written(emulator) == 0


def test_wrong_case_navigation_property_is_undeclared(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    before = read(api, contacts[0])
    for name in ("new_customerprofile", "New_CustomerProfile", "new_customerProfile", "nosuch"):
        response = patch(api, contacts[0], {f"{name}@odata.bind": f"{PROFILES}({profile_ids[0]})"})
        assert error(response) == (400, "0x80048d19", UNDECLARED.format(name=name)), name
    assert read(api, contacts[0]) == before


def test_bad_bind_values_are_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    before = read(api, contacts[0])
    bad: list[Any] = [
        f"contacts({contacts[1]})",
        f"leads({contacts[1]})",
        f"nosuchset({profile_ids[0]})",
        PROFILES,
        f"{PROFILES}(not-a-guid)",
        f"{PROFILES}('{profile_ids[0]}')",
        42,
        [f"{PROFILES}({profile_ids[0]})"],
    ]
    for value in bad:
        response = patch(api, contacts[0], {f"{NAV}@odata.bind": value})
        status, code, message = error(response)
        assert (status, code) == (400, "0x80060888"), value
        assert message
    assert read(api, contacts[0]) == before


def test_bind_to_another_entity_set_names_the_mismatch(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    response = patch(api, contacts[0], {f"{NAV}@odata.bind": f"contacts({contacts[1]})"})
    assert error(response) == (
        400,
        "0x80060888",
        f"The 'odata.bind' value 'contacts({contacts[1]})' names the entity set 'contacts', but the "
        f"navigation property '{NAV}' refers to 'msdynci_customerprofile'.",
    )


def test_invalid_property_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    before = read(api, contacts[0])
    for name in ("Name", "nosuchcolumn", "FullName", VALUE, "new_customerprofile", PID.upper()):
        response = patch(api, contacts[0], {**bind(profile_ids[0]), name: profile_ids[0]})
        assert error(response) == (400, "0x80048d19", invalid_property(name)), name
    assert read(api, contacts[0]) == before


def test_wrong_value_type_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    before = read(api, contacts[0])
    cases: list[tuple[str, Any, str]] = [
        ("statecode", "x", "Edm.Int32"),
        ("statecode", 1.5, "Edm.Int32"),
        ("fullname", 5, "Edm.String"),
        ("contactid", "not-a-guid", "Edm.Guid"),
    ]
    for column, value, edm in cases:
        response = patch(api, contacts[0], {column: value})
        assert error(response) == (
            400,
            "0x80060888",
            f"Cannot convert the literal '{value}' to the expected type '{edm}' of property '{column}' on "
            "type 'Microsoft.Dynamics.CRM.contact'.",
        )
    assert read(api, contacts[0]) == before


def test_body_that_is_not_an_object_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    assert error(patch(api, contacts[0], [1, 2]))[:2] == (400, "0x80048d19")
    response = api.patch(
        f"contacts({contacts[0]})",
        data=b"{not json",
        headers={"If-Match": "*", "Content-Type": "application/json"},
    )
    assert error(response)[:2] == (400, "0x80048d19")


def test_system_columns_in_the_body_are_ignored(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    before = read(api, contacts[0])
    response = patch(api, contacts[0], {"modifiedon": "2001-01-01T00:00:00Z", "fullname": "Renamed"})
    assert response.status_code == 204, response.text
    after = read(api, contacts[0])
    assert after["fullname"] == "Renamed"
    assert after["modifiedon"] >= before["modifiedon"]


def test_return_representation(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    response = api.patch(
        f"contacts({contacts[0]})?$select=contactid,{VALUE}",
        json=bind(profile_ids[1]),
        headers={"If-Match": "*", "Prefer": "return=representation"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["OData-EntityId"] == f"{api.api_url}contacts({contacts[0]})"
    body = response.json()
    assert body["contactid"] == contacts[0]
    assert body[VALUE] == profile_ids[1]
    assert body["@odata.etag"] == read(api, contacts[0])["@odata.etag"]
    assert set(body) == {"@odata.context", "@odata.etag", "contactid", VALUE}

    new = str(uuid.uuid4())
    created = api.patch(
        f"contacts({new})", json=bind(profile_ids[1]), headers={"Prefer": "return=representation"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["contactid"] == new
    assert created.json()[VALUE] == profile_ids[1]


# -- clearing ---------------------------------------------------------------------------------------


def bound(api: WebApi, contact: str, profile: str) -> dict[str, Any]:
    assert patch(api, contact, bind(profile)).status_code == 204
    row = read(api, contact)
    assert row[VALUE] == profile
    return row


def test_delete_ref_clears_lookup(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    before = bound(api, contacts[0], profile_ids[0])
    emulator.advance_clock(3)
    emulator.reset_stats()
    response = api.delete(f"contacts({contacts[0]})/{NAV}/$ref")
    assert response.status_code == 204, response.text
    after = read(api, contacts[0])
    assert after[VALUE] is None
    assert after[PID] is None
    assert after["modifiedon"] > before["modifiedon"]
    assert version(after) > version(before)
    assert written(emulator) == 1
    assert emulator.stats()["requests"]["disassociate"] == 1


def test_delete_ref_with_wrong_case_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    before = bound(api, contacts[0], profile_ids[0])
    response = api.delete(f"contacts({contacts[0]})/new_customerprofile/$ref")
    assert error(response) == (400, "0x8006088a", "Resource not found for the segment 'new_customerprofile'.")
    assert read(api, contacts[0]) == before


def test_delete_ref_on_missing_row_is_404(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    missing = str(uuid.uuid4())
    response = api.delete(f"contacts({missing})/{NAV}/$ref")
    assert error(response) == (404, "0x80040217", f"contact With Id = {missing} Does Not Exist")
    assert error(api.get(f"contacts({missing})"))[0] == 404


def test_patch_navigation_property_null_clears(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    bound(api, contacts[0], profile_ids[0])
    response = patch(api, contacts[0], {NAV: None})
    assert response.status_code == 204, response.text
    assert read(api, contacts[0])[VALUE] is None


def test_patch_navigation_property_with_a_value_is_refused(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    before = bound(api, contacts[0], profile_ids[0])
    response = patch(api, contacts[0], {NAV: {"msdynci_customerid": "x"}})
    assert error(response)[:2] == (400, "0x80060888")
    assert read(api, contacts[0]) == before


def test_bind_null_ignored(emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    emulator.modes(bind_null="ignored")
    before = bound(api, contacts[0], profile_ids[0])
    response = patch(api, contacts[0], {f"{NAV}@odata.bind": None})
    assert response.status_code == 204, response.text
    assert read(api, contacts[0])[VALUE] == profile_ids[0]
    assert read(api, contacts[0])[VALUE] == before[VALUE]


def test_bind_null_refused(emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    emulator.modes(bind_null="refused")
    before = bound(api, contacts[0], profile_ids[0])
    response = patch(api, contacts[0], {f"{NAV}@odata.bind": None})
    assert error(response) == (400, "0x80060888", BIND_NULL_REFUSED)
    assert read(api, contacts[0]) == before


def test_bind_null_server_error(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    emulator.modes(bind_null="server_error")
    before = bound(api, contacts[0], profile_ids[0])
    response = patch(api, contacts[0], {f"{NAV}@odata.bind": None})
    assert error(response) == (500, "0x80040216", "An unexpected error occurred.")
    assert response.headers["Content-Type"].startswith("application/json")
    assert read(api, contacts[0]) == before


def test_bind_null_with_wrong_case_is_still_undeclared(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    response = patch(api, contacts[0], {"new_customerprofile@odata.bind": None})
    assert error(response) == (400, "0x80048d19", UNDECLARED.format(name="new_customerprofile"))


def test_cid_lookup_present_reads_and_clears(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=CONTACTS, leads=LEADS, seed=SEED, modes={"cid_lookup": "present"})
    contact = contact_ids(api)[0]
    profile = profiles(api)[0]["msdynci_customerprofileid"]
    select = f"$select=contactid,_{CID_NAV}_value"
    response = patch(api, contact, {f"{CID_NAV}@odata.bind": f"{PROFILES}({profile})"})
    assert response.status_code == 204, response.text
    assert read(api, contact, select)[f"_{CID_NAV}_value"] == profile
    assert api.delete(f"contacts({contact})/{CID_NAV}/$ref").status_code == 204
    assert read(api, contact, select)[f"_{CID_NAV}_value"] is None


# -- partition ids ----------------------------------------------------------------------------------


@pytest.fixture
def partitioned(emulator: EmulatorClient, api: WebApi) -> tuple[list[str], list[dict[str, Any]]]:
    emulator.reset(contacts=CONTACTS, leads=LEADS, seed=SEED, modes={"profile_partitions": "custom"})
    create_lookup(api)
    rows = profiles(api)
    assert all(isinstance(p["partitionid"], str) and p["partitionid"] for p in rows)
    return contact_ids(api), rows


def keyed(profile: dict[str, Any], pid: str | None = None) -> dict[str, str]:
    partition = profile["partitionid"] if pid is None else pid
    return {
        f"{NAV}@odata.bind": f"{PROFILES}(msdynci_customerprofileid={profile['msdynci_customerprofileid']},"
        f"partitionid='{partition}')"
    }


def test_bind_with_partition_id_sets_both_columns(
    api: WebApi, partitioned: tuple[list[str], list[dict[str, Any]]]
) -> None:
    contacts, rows = partitioned
    response = patch(api, contacts[0], keyed(rows[0]))
    assert response.status_code == 204, response.text
    row = read(api, contacts[0])
    assert row[VALUE] == rows[0]["msdynci_customerprofileid"]
    assert row[PID] == rows[0]["partitionid"]


def test_bind_with_wrong_partition_id_is_404(
    api: WebApi, partitioned: tuple[list[str], list[dict[str, Any]]]
) -> None:
    contacts, rows = partitioned
    before = read(api, contacts[0])
    response = patch(api, contacts[0], keyed(rows[0], pid="cid-nosuch"))
    assert error(response) == (
        404,
        "0x80040217",
        f"msdynci_customerprofile With Id = {rows[0]['msdynci_customerprofileid']} Does Not Exist",
    )
    assert read(api, contacts[0]) == before


def test_bind_by_guid_alone_not_found(
    emulator: EmulatorClient, api: WebApi, partitioned: tuple[list[str], list[dict[str, Any]]]
) -> None:
    contacts, rows = partitioned
    emulator.modes(bind_without_partition="not_found")
    profile = rows[0]["msdynci_customerprofileid"]
    response = patch(api, contacts[0], bind(profile))
    assert error(response) == (
        404,
        "0x80040217",
        f"msdynci_customerprofile With Id = {profile} Does Not Exist",
    )
    assert read(api, contacts[0])[VALUE] is None


def test_bind_by_guid_alone_resolve(
    emulator: EmulatorClient, api: WebApi, partitioned: tuple[list[str], list[dict[str, Any]]]
) -> None:
    contacts, rows = partitioned
    emulator.modes(bind_without_partition="resolve")
    response = patch(api, contacts[0], bind(rows[1]["msdynci_customerprofileid"]))
    assert response.status_code == 204, response.text
    row = read(api, contacts[0])
    assert (row[VALUE], row[PID]) == (rows[1]["msdynci_customerprofileid"], rows[1]["partitionid"])


def test_bind_by_guid_alone_dangling(
    emulator: EmulatorClient, api: WebApi, partitioned: tuple[list[str], list[dict[str, Any]]]
) -> None:
    emulator.modes(bind_without_partition="dangling")
    truth = emulator.links("contact", rows="all")
    assert truth["navigation_property"] == NAV
    assert truth["summary"]["partition_mismatch"] == 0
    target = next(r for r in truth["rows"] if r["expected"] and r["expected_partition"])
    response = patch(api, target["id"], bind(target["expected"]))
    assert response.status_code == 204, response.text
    row = read(api, target["id"])
    assert (row[VALUE], row[PID]) == (target["expected"], None)
    summary = emulator.links("contact", rows="none")["summary"]
    assert summary["partition_mismatch"] == 1
    assert summary["correct"] == truth["summary"]["correct"]

    fixed = patch(
        api,
        target["id"],
        {
            f"{NAV}@odata.bind": f"{PROFILES}(msdynci_customerprofileid="
            f"{target['expected']},partitionid='{target['expected_partition']}')"
        },
    )
    assert fixed.status_code == 204, fixed.text
    summary = emulator.links("contact", rows="none")["summary"]
    assert summary["partition_mismatch"] == 0
    assert summary["correct"] == truth["summary"]["correct"] + 1


def test_partition_id_without_custom_partitions_is_404(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    response = patch(
        api,
        contacts[0],
        {f"{NAV}@odata.bind": f"{PROFILES}(msdynci_customerprofileid={profile_ids[0]},partitionid='cid-1')"},
    )
    assert error(response) == (
        404,
        "0x80040217",
        f"msdynci_customerprofile With Id = {profile_ids[0]} Does Not Exist",
    )
    keyed_only = patch(
        api, contacts[0], {f"{NAV}@odata.bind": f"{PROFILES}(msdynci_customerprofileid={profile_ids[0]})"}
    )
    assert keyed_only.status_code == 204, keyed_only.text
    assert read(api, contacts[0])[VALUE] == profile_ids[0]


def test_partition_id_on_a_standard_table_key_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    response = patch(api, f"contactid={contacts[0]},partitionid='x'", {"fullname": "X"})
    assert error(response)[:2] == (400, "0x80060888")


# -- UpdateMultiple ---------------------------------------------------------------------------------


def target(contact: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {"@odata.type": CONTACT_TYPE, "contactid": contact, **bind(profile), **extra}


def update_multiple(api: WebApi, targets: Any, entity_set: str = "contacts") -> Any:
    return api.post(f"{entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets})


def test_update_multiple_writes_every_target(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    before = {c: read(api, c) for c in contacts[:5]}
    emulator.advance_clock(2)
    emulator.reset_stats()
    targets = [target(c, profile_ids[i]) for i, c in enumerate(contacts[:5])]
    targets[0]["@odata.type"] = "#" + CONTACT_TYPE
    targets[1]["fullname"] = "Bulk Renamed"
    response = update_multiple(api, targets)
    stats = emulator.stats()
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert stats["requests"] == {"update_multiple": 1}
    assert stats["operations"] == {"update_multiple": 1}
    assert stats["rows_written"] == {"contact": 5}
    assert stats["per_user"]["hydration-app"]["rows_written"] == 5
    for i, contact in enumerate(contacts[:5]):
        row = read(api, contact)
        assert row[VALUE] == profile_ids[i]
        assert row["modifiedon"] > before[contact]["modifiedon"]
        assert version(row) > version(before[contact])
    assert read(api, contacts[1])["fullname"] == "Bulk Renamed"
    assert read(api, contacts[5])[VALUE] is None


def snapshot(api: WebApi, contacts: list[str]) -> dict[str, dict[str, Any]]:
    return {c: read(api, c) for c in contacts}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no_type", "Targets[1] must be an object with '@odata.type'."),
        (
            "wrong_type",
            "The '@odata.type' 'Microsoft.Dynamics.CRM.lead' does not match the type "
            "'Microsoft.Dynamics.CRM.contact' expected by the request.",
        ),
        ("no_key", "Targets[1] must contain the primary key 'contactid'."),
        ("bad_key", None),
        ("not_object", "Targets[1] must be an object with '@odata.type'."),
        ("bad_value", None),
    ],
)
def test_update_multiple_bad_target_is_400_and_writes_nothing(
    emulator: EmulatorClient,
    api: WebApi,
    scene: tuple[list[str], list[str]],
    change: str,
    message: str | None,
) -> None:
    contacts, profile_ids = scene
    targets: list[Any] = [target(c, profile_ids[i]) for i, c in enumerate(contacts[:3])]
    if change == "no_type":
        del targets[1]["@odata.type"]
    elif change == "wrong_type":
        targets[1]["@odata.type"] = "Microsoft.Dynamics.CRM.lead"
    elif change == "no_key":
        del targets[1]["contactid"]
    elif change == "bad_key":
        targets[1]["contactid"] = "nope"
    elif change == "not_object":
        targets[1] = "contacts(x)"
    else:
        targets[1]["statecode"] = "x"
    before = snapshot(api, contacts[:3])
    emulator.reset_stats()
    status, code, text = error(update_multiple(api, targets))
    assert (status, code) == (400, "0x80060888")
    if message is not None:
        assert text == message
    assert snapshot(api, contacts[:3]) == before
    assert emulator.stats()["rows_written"] == {}


def test_update_multiple_without_targets_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    bodies: list[Any] = [{"Targets": []}, {}, {"Targets": {"a": 1}}, [], {"Targets": None}]
    for body in bodies:
        response = api.post("contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json=body)
        assert error(response) == (
            400,
            "0x80060888",
            "UpdateMultiple requires a non-empty 'Targets' collection.",
        ), body


def test_update_multiple_is_all_or_nothing(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    missing = str(uuid.uuid4())
    targets = [target(c, profile_ids[i]) for i, c in enumerate(contacts[:4])]
    targets.insert(3, target(missing, profile_ids[9]))
    before = snapshot(api, contacts[:4])
    emulator.reset_stats()
    response = update_multiple(api, targets)
    assert error(response) == (404, "0x80040217", f"Contact With Ids = {missing} Do Not Exist")
    assert snapshot(api, contacts[:4]) == before
    assert error(api.get(f"contacts({missing})"))[0] == 404
    stats = emulator.stats()
    assert stats["rows_written"] == {}
    assert stats["per_user"]["hydration-app"].get("rows_written", 0) == 0


def test_update_multiple_bind_to_missing_profile_writes_nothing(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    ghost = str(uuid.uuid4())
    targets = [target(contacts[0], profile_ids[0]), target(contacts[1], ghost)]
    before = snapshot(api, contacts[:2])
    emulator.reset_stats()
    response = update_multiple(api, targets)
    assert error(response) == (404, "0x80040217", f"msdynci_customerprofile With Id = {ghost} Does Not Exist")
    assert snapshot(api, contacts[:2]) == before
    assert emulator.stats()["rows_written"] == {}


def test_update_multiple_duplicate_keys_first_wins(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    targets = [
        target(contacts[0], profile_ids[0]),
        target(contacts[1], profile_ids[1]),
        target(contacts[0].upper(), profile_ids[2]),
        target(contacts[0], profile_ids[3], fullname="Second"),
    ]
    name = read(api, contacts[0])["fullname"]
    emulator.reset_stats()
    response = update_multiple(api, targets)
    assert response.status_code == 204, response.text
    row = read(api, contacts[0])
    assert row[VALUE] == profile_ids[0]
    assert row["fullname"] == name
    assert read(api, contacts[1])[VALUE] == profile_ids[1]
    assert emulator.stats()["rows_written"] == {"contact": 2}


def test_update_multiple_on_a_table_without_support_is_400(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    emulator.modes(update_multiple={"contact": False, "lead": True, "msdynci_customerprofile": True})
    filters = api.get(
        "sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq 'UpdateMultiple' "
        "and primaryobjecttypecode eq 'contact'"
    )
    assert filters.status_code == 200
    assert filters.json()["value"] == []
    before = snapshot(api, contacts[:2])
    response = update_multiple(api, [target(c, profile_ids[0]) for c in contacts[:2]])
    assert error(response) == (400, "0x80040800", "UpdateMultiple is not enabled on the entity contact")
    assert snapshot(api, contacts[:2]) == before
    leads = api.get("leads?$select=leadid&$top=1").json()["value"]
    response = update_multiple(
        api,
        [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": leads[0]["leadid"], "fullname": "L"}],
        "leads",
    )
    assert response.status_code == 204, response.text


def test_update_multiple_on_an_unknown_entity_set_is_404(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    response = update_multiple(api, [], "nosuchset")
    assert error(response) == (404, "0x8006088a", "Resource not found for the segment 'nosuchset'.")


# -- create and delete ------------------------------------------------------------------------------


def test_create_contact(emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    _, profile_ids = scene
    emulator.reset_stats()
    response = api.post("contacts", json={"fullname": "New Person", **bind(profile_ids[0])})
    assert response.status_code == 204, response.text
    location = response.headers["OData-EntityId"]
    prefix = f"{api.api_url}contacts("
    assert location.startswith(prefix)
    assert location.endswith(")")
    new = location[len(prefix) : -1]
    assert uuid.UUID(new)
    row = read(api, new)
    assert (row["fullname"], row[VALUE], row["statecode"]) == ("New Person", profile_ids[0], 0)
    assert written(emulator) == 1
    assert emulator.stats()["requests"]["create"] == 1


def test_create_with_explicit_id_and_duplicate(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    new = str(uuid.uuid4())
    response = api.post("contacts", json={"contactid": new.upper(), "fullname": "Keyed"})
    assert response.status_code == 204, response.text
    assert response.headers["OData-EntityId"] == f"{api.api_url}contacts({new})"
    assert read(api, new)["fullname"] == "Keyed"
    again = api.post("contacts", json={"contactid": new, "fullname": "Again"})
    assert error(again) == (412, "0x80040237", "A record with matching key values already exists.")
    assert read(api, new)["fullname"] == "Keyed"
    existing = api.post("contacts", json={"contactid": contacts[0]})
    assert error(existing)[:2] == (412, "0x80040237")


def test_create_with_representation_is_201(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    response = api.post(
        "contacts?$select=fullname", json={"fullname": "Shown"}, headers={"Prefer": "return=representation"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["fullname"] == "Shown"
    assert response.headers["OData-EntityId"] == f"{api.api_url}contacts({body['contactid']})"


def test_create_with_bad_body_is_400(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    bodies: list[Any] = [{"contactid": 5}, {"contactid": "nope"}, {"Name": "x"}, [1], None]
    for body in bodies:
        response = api.post("contacts", json=body)
        assert error(response)[0] == 400, body
    assert len(contact_ids(api)) == CONTACTS


def test_delete_contact(emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, _ = scene
    emulator.reset_stats()
    response = api.delete(f"contacts({contacts[0]})")
    assert response.status_code == 204, response.text
    assert error(api.get(f"contacts({contacts[0]})")) == (
        404,
        "0x80040217",
        f"contact With Id = {contacts[0]} Does Not Exist",
    )
    again = api.delete(f"contacts({contacts[0]})")
    assert error(again) == (404, "0x80040217", f"contact With Id = {contacts[0]} Does Not Exist")
    assert written(emulator) == 1
    assert len(contact_ids_all(api)) == CONTACTS - 1


def test_write_to_unknown_entity_set_is_404(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    response = api.patch(f"nosuchset({uuid.uuid4()})", json={"a": 1}, headers={"If-Match": "*"})
    assert error(response) == (404, "0x8006088a", "Resource not found for the segment 'nosuchset'.")
