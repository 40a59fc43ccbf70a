"""The other ways to address rows: conditional GET, single properties, ``$count``, ``partitionId``.

Also ``fullname``, which Dataverse composes from the first and last names on every write.
"""

from __future__ import annotations

from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient, WebApi

PROFILES = "msdynci_customerprofiles"


def first_contact(api: WebApi) -> dict[str, Any]:
    body: dict[str, Any] = api.get("contacts?$select=fullname,firstname,lastname&$top=1").json()["value"][0]
    return body


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_conditional_get_answers_304_while_the_version_is_current(api: WebApi) -> None:
    contact = first_contact(api)["contactid"]
    first = api.get(f"contacts({contact})?$select=fullname")
    tag = first.json()["@odata.etag"]
    assert first.headers["ETag"] == tag
    unchanged = api.get(f"contacts({contact})?$select=fullname", headers={"If-None-Match": tag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == tag
    assert api.patch(f"contacts({contact})", json={"emailaddress1": "new@example.com"}).status_code == 204
    changed = api.get(f"contacts({contact})?$select=fullname", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.json()["@odata.etag"] != tag


def test_single_property_get_put_delete_and_value(api: WebApi) -> None:
    contact = first_contact(api)
    key = contact["contactid"]
    got = api.get(f"contacts({key})/firstname")
    assert got.status_code == 200, got.text
    assert got.json() == {
        "@odata.context": f"{api.api_url}$metadata#contacts({key})/firstname",
        "value": contact["firstname"],
    }
    raw = api.get(f"contacts({key})/firstname/$value")
    assert (raw.status_code, raw.text, raw.headers["Content-Type"]) == (
        200,
        contact["firstname"],
        "text/plain; charset=utf-8",
    )
    assert api.put(f"contacts({key})/lastname", json={"value": "Single"}).status_code == 204
    assert api.get(f"contacts({key})/fullname").json()["value"] == f"{contact['firstname']} Single"
    assert api.delete(f"contacts({key})/emailaddress1").status_code == 204
    assert api.get(f"contacts({key})/emailaddress1").status_code == 204, "a null value answers 204"
    assert api.get(f"contacts({key})/statecode/$value").text == "0"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "contacts({key})/nope", None, 400),
        ("PUT", "contacts({key})/lastname", {"wrong": 1}, 400),
        ("PUT", "contacts({key})/lastname", {"value": 5}, 400),
        ("PUT", "contacts({key})/modifiedon", {"value": "2025-01-01T00:00:00Z"}, 400),
        ("DELETE", "contacts({key})/contactid", None, 400),
        ("GET", "contacts(00000000-0000-4000-8000-000000000001)/firstname", None, 404),
    ],
)
def test_single_property_errors(api: WebApi, method: str, path: str, body: Any, status: int) -> None:
    key = first_contact(api)["contactid"]
    response = api.request(method, path.format(key=key), json=body)
    assert error(response)[0] == status


def test_count_segment_and_count_option(emulator: EmulatorClient, api: WebApi) -> None:
    count = api.get("contacts/$count")
    assert (count.status_code, count.text) == (200, "300")
    assert count.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert api.get("contacts/$count?$filter=statecode eq 1").text == "0"
    body = api.get("leads?$select=leadid&$count=true", headers={"Prefer": "odata.maxpagesize=10"}).json()
    assert len(body["value"]) == 10
    assert body["@odata.count"] == 150, "the count is of every matching row, not the page"
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False
    assert "@odata.count" not in api.get("leads?$select=leadid&$count=false").json()
    assert error(api.get("leads?$count=yes"))[0] == 400
    assert error(api.get("leads/$count?$top=1"))[0] == 400
    emulator.reset(contacts=5200, leads=0, seed=7)
    big = api.get("contacts?$select=contactid&$count=true&$top=1").json()
    assert big["@odata.count"] == 5000
    assert big["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True
    assert api.get("contacts/$count").text == "5000"


def test_partition_id_parameter_addresses_elastic_rows(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=20, leads=0, seed=3, modes={"profile_partitions": "custom"})
    profile = api.get(f"{PROFILES}?$select=partitionid&$top=1").json()["value"][0]
    key, pid = profile["msdynci_customerprofileid"], profile["partitionid"]
    assert error(api.get(f"{PROFILES}({key})"))[0] == 404, "without its partition the row is not found"
    for query in (f"partitionId='{pid}'", f"partitionid={pid}"):
        found = api.get(f"{PROFILES}({key})?{query}&$select=partitionid")
        assert found.status_code == 200, found.text
        assert found.json()["partitionid"] == pid
    patched = api.patch(f"{PROFILES}({key})?partitionId='{pid}'", json={"msdynci_fullname": "By parameter"})
    assert patched.status_code == 204, patched.text
    assert (
        api.get(f"{PROFILES}({key})/msdynci_fullname?partitionId='{pid}'").json()["value"] == "By parameter"
    )
    assert error(api.get(f"{PROFILES}({key})?partitionId='other'"))[0] == 404
    both = f"{PROFILES}(msdynci_customerprofileid={key},partitionid='{pid}')?partitionId='other'"
    assert error(api.get(both))[0] == 400
    assert error(api.get(f"contacts({first_contact(api)['contactid']})?partitionId='x'"))[0] == 400
    assert api.delete(f"{PROFILES}({key})?partitionId='{pid}'").status_code == 204


def test_fullname_is_composed_from_first_and_last_names(api: WebApi) -> None:
    created = api.post("contacts", json={"firstname": "Grace", "lastname": "Hopper"})
    key = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert api.get(f"contacts({key})/fullname").json()["value"] == "Grace Hopper"
    api.patch(f"contacts({key})", json={"firstname": None})
    assert api.get(f"contacts({key})/fullname").json()["value"] == "Hopper"
    api.patch(f"contacts({key})", json={"emailaddress1": "g@example.com"})
    assert api.get(f"contacts({key})/fullname").json()["value"] == "Hopper", "other columns leave it alone"
    api.patch(f"contacts({key})", json={"lastname": None})
    assert api.get(f"contacts({key})/fullname").status_code == 204
    lead = api.post("leads", json={"lastname": "Lamarr", "firstname": "Hedy"})
    lead_key = lead.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert api.get(f"leads({lead_key})/fullname").json()["value"] == "Hedy Lamarr"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "contacts({key})/msdynci_lookupfield_customerprofile", 400),
        ("GET", "contacts({key})/msdynci_lookupfield_customerprofile/$ref", 400),
        ("GET", "contacts?$apply=groupby((statecode))", 400),
        ("GET", "contacts?$search=ada", 400),
        ("GET", "contacts?fetchXml=%3Cfetch/%3E", 400),
        ("GET", "$metadata", 404),
        ("GET", "GlobalOptionSetDefinitions", 404),
        ("POST", "EntityDefinitions", 404),
        ("POST", "contacts({key})/Microsoft.Dynamics.CRM.Merge", 404),
        ("GET", "contacts?$expand=msdynci_lookupfield_customerprofile", 400),
        ("GET", "msdynci_customerprofiles?partitionId='p'", 400),
    ],
)
def test_unimplemented_forms_answer_the_documented_error_shape(
    emulator: EmulatorClient, api: WebApi, method: str, path: str, status: int
) -> None:
    """What the emulator does not implement (docs/emulator.md lists it) is a 400 or 404, never a 500."""
    emulator.reset(contacts=5, leads=0, seed=1, modes={"cid_lookup": "present"})
    key = first_contact(api)["contactid"]
    answer = error(api.request(method, path.format(key=key), json={} if method == "POST" else None))
    assert answer[0] == status
    assert answer[1].startswith("0x")
