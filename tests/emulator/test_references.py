"""``$ref`` in both directions of a one-to-many relationship; the bulk CreateMultiple and UpsertMultiple."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient, WebApi

NAV = "msdynci_lookupfield_customerprofile"
VALUE = f"_{NAV}_value"
COLLECTION = "msdynci_customerprofile_contact"
PROFILES = "msdynci_customerprofiles"
CONTACT_TYPE = "Microsoft.Dynamics.CRM.contact"


@pytest.fixture
def scene(emulator: EmulatorClient, api: WebApi) -> tuple[list[str], list[str]]:
    """Contacts and profiles, with CI-D's lookup from contact to profile in place."""
    emulator.reset(contacts=20, leads=0, seed=4, modes={"cid_lookup": "present"})
    contacts = [r["contactid"] for r in api.get("contacts?$select=contactid").json()["value"]]
    profiles = [
        r["msdynci_customerprofileid"] for r in api.get(f"{PROFILES}?$select=partitionid").json()["value"]
    ]
    for contact in contacts[:3]:  # start unlinked
        assert api.delete(f"contacts({contact})/{NAV}/$ref").status_code == 204
    return contacts, profiles


def link(api: WebApi, contact: str) -> Any:
    return api.get(f"contacts({contact})?$select={VALUE}").json()[VALUE]


def error(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"]


def test_put_ref_sets_and_delete_ref_clears_a_single_valued_lookup(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profiles = scene
    target = f"{api.api_url}{PROFILES}({profiles[0]})"
    response = api.put(f"contacts({contacts[0]})/{NAV}/$ref", json={"@odata.id": target})
    assert response.status_code == 204, response.text
    assert link(api, contacts[0]) == profiles[0]
    relative = api.put(
        f"contacts({contacts[0]})/{NAV}/$ref", json={"@odata.id": f"{PROFILES}({profiles[1]})"}
    )
    assert relative.status_code == 204
    assert link(api, contacts[0]) == profiles[1]
    assert api.delete(f"contacts({contacts[0]})/{NAV}/$ref").status_code == 204
    assert link(api, contacts[0]) is None


def test_post_ref_on_the_collection_links_a_child_and_delete_unlinks_it(
    api: WebApi, emulator: EmulatorClient, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profiles = scene
    parent = f"{PROFILES}({profiles[0]})/{COLLECTION}"
    for contact in contacts[:2]:
        posted = api.post(f"{parent}/$ref", json={"@odata.id": f"{api.api_url}contacts({contact})"})
        assert posted.status_code == 204, posted.text
        assert link(api, contact) == profiles[0]
    assert api.delete(f"{parent}({contacts[0]})/$ref").status_code == 204
    assert link(api, contacts[0]) is None
    by_id = api.delete(f"{parent}/$ref", params={"$id": f"{api.api_url}contacts({contacts[1]})"})
    assert by_id.status_code == 204, by_id.text
    assert link(api, contacts[1]) is None
    other = f"{PROFILES}({profiles[1]})/{COLLECTION}"
    api.post(f"{parent}/$ref", json={"@odata.id": f"contacts({contacts[2]})"})
    assert api.delete(f"{other}({contacts[2]})/$ref").status_code == 204
    assert link(api, contacts[2]) == profiles[0], "a child of another parent stays linked"
    requests = emulator.stats()["requests"]
    assert (requests["associate"], requests["disassociate"]) == (3, 6)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        (
            "PUT",
            "contacts({c})/msdynci_LookupField_CustomerProfile/$ref",
            {"@odata.id": "P"},
            (400, "0x8006088a"),
        ),
        ("PUT", "contacts({c})/" + NAV + "/$ref", {"id": "P"}, (400, "0x80060888")),
        ("PUT", "contacts({c})/" + NAV + "/$ref", {"@odata.id": "contacts({c})"}, (400, "0x80060888")),
        (
            "PUT",
            "contacts({c})/" + NAV + "/$ref",
            {"@odata.id": PROFILES + "({missing})"},
            (404, "0x80040217"),
        ),
        (
            "POST",
            PROFILES + "({p})/" + COLLECTION + "/$ref",
            {"@odata.id": "contacts({missing})"},
            (404, "0x80040217"),
        ),
        (
            "POST",
            PROFILES + "({missing})/" + COLLECTION + "/$ref",
            {"@odata.id": "contacts({c})"},
            (404, "0x80040217"),
        ),
        ("POST", PROFILES + "({p})/nope/$ref", {"@odata.id": "contacts({c})"}, (400, "0x8006088a")),
        ("DELETE", PROFILES + "({p})/" + COLLECTION + "/$ref", None, (400, "0x80060888")),
    ],
)
def test_ref_errors(
    api: WebApi,
    scene: tuple[list[str], list[str]],
    method: str,
    path: str,
    body: Any,
    expected: tuple[int, str],
) -> None:
    contacts, profiles = scene
    names = {"c": contacts[0], "p": profiles[0], "missing": str(uuid.uuid4())}
    names["P"] = f"{PROFILES}({profiles[0]})"
    if body is not None:
        body = {k: names["P"] if v == "P" else v.format(**names) for k, v in body.items()}
    response = api.request(method, path.format(**names), json=body)
    assert error(response) == expected
    assert link(api, contacts[0]) is None


def test_create_multiple_answers_the_new_ids(api: WebApi, emulator: EmulatorClient) -> None:
    given = str(uuid.uuid4())
    targets = [
        {"@odata.type": CONTACT_TYPE, "firstname": "New", "lastname": "One"},
        {"@odata.type": CONTACT_TYPE, "contactid": given, "firstname": "Given"},
    ]
    response = api.post("contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{api.api_url}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    assert len(body["Ids"]) == 2
    assert body["Ids"][1] == given
    assert api.get(f"contacts({body['Ids'][0]})/fullname").json()["value"] == "New One"
    again = api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [targets[1], targets[0]]}
    )
    assert error(again) == (412, "0x80040237"), "an existing key fails the whole request"
    assert api.get("contacts/$count").text == "302", "nothing of the failed request was written"
    emulator.modes(update_multiple={"contact": False, "lead": True, "msdynci_customerprofile": True})
    refused = api.post("contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets[:1]})
    assert error(refused) == (400, "0x80040800")


def test_upsert_multiple_updates_or_creates_each_target(api: WebApi) -> None:
    existing = api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"]
    new = str(uuid.uuid4())
    targets = [
        {"@odata.type": CONTACT_TYPE, "@odata.id": f"contacts({existing})", "lastname": "Upserted"},
        {
            "@odata.type": CONTACT_TYPE,
            "@odata.id": f"{api.api_url}contacts(contactid={new})",
            "firstname": "Fresh",
        },
    ]
    response = api.post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert response.status_code == 200, response.text
    assert response.json()["Ids"] == [existing, new]
    assert api.get(f"contacts({existing})/lastname").json()["value"] == "Upserted"
    assert api.get(f"contacts({new})/fullname").json()["value"] == "Fresh"
    wrong = [{"@odata.type": CONTACT_TYPE, "@odata.id": f"leads({new})"}]
    assert (
        error(api.post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": wrong}))[0] == 400
    )
    assert error(api.post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": []}))[0] == 400
