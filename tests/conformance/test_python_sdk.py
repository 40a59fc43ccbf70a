"""Microsoft's Python Dataverse SDK (``powerplatform-dataverse-client``) against the emulator, as shipped.

Each test runs one of the SDK's standard operations through its public API (no cache priming, no
patching) and checks the result both as the SDK reports it and as the emulator stored it. Where the
SDK itself leaves something out, the test says so and checks what the emulator answered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models.upsert import UpsertItem

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi

from .conftest import CONTACTS

pytestmark = pytest.mark.xdist_group("conformance-python-sdk")
"""One worker runs this module, so its TLS emulator (and its client run) start once, not once a worker."""
USER = "python-sdk"
NAV = "msdynci_lookupfield_customerprofile"
VALUE = f"_{NAV}_value"


class StaticCredential:
    """A ``TokenCredential`` handing out one bearer token (the emulator reads the user from it)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The token, valid for an hour; ``scopes`` is the organization's ``/.default``."""
        return AccessToken(USER, int(time.time()) + 3600)


@pytest.fixture
def sdk(tls_server: EmulatorServer, control: EmulatorClient) -> Iterator[DataverseClient]:
    """A fresh SDK client on the freshly reset TLS emulator (so no metadata is cached)."""
    with DataverseClient(tls_server.base_url, StaticCredential()) as client:
        yield client


@pytest.fixture
def web(control: EmulatorClient) -> Iterator[WebApi]:
    """The test's own view of the emulator, as the same user."""
    with control.web_api(USER) as session:
        yield session


def row(web: WebApi, entity_set: str, key: str) -> dict[str, Any]:
    response = web.get(f"{entity_set}({key})")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def contact_ids(web: WebApi) -> list[str]:
    response = web.get("contacts?$select=contactid&$filter=statecode eq 0")
    assert response.status_code == 200, response.text
    return [r["contactid"] for r in response.json()["value"]]


def test_connect_and_table_metadata(sdk: DataverseClient, web: WebApi) -> None:
    info = sdk.tables.get("contact")
    assert info is not None
    expected = web.get("EntityDefinitions(LogicalName='contact')").json()
    assert (info.logical_name, info.entity_set_name, info.primary_id_attribute) == (
        "contact",
        "contacts",
        "contactid",
    )
    assert info.metadata_id == expected["MetadataId"]
    assert sdk.tables.get("nosuchtable") is None


def test_query_with_select_filter_top_and_paging_over_every_row(
    sdk: DataverseClient, web: WebApi, control: EmulatorClient
) -> None:
    """With short pages on, the SDK must follow next links rather than count rows per page."""
    control.modes(short_pages={"seed": 5})
    expected = contact_ids(web)
    assert len(expected) == CONTACTS
    result = sdk.records.list("contact", select=["fullname"], filter="statecode eq 0", page_size=9)
    assert [r["contactid"] for r in result] == expected
    assert all(set(r.data) == {"contactid", "fullname"} for r in result)
    pages = list(sdk.records.list_pages("contact", select=["fullname"], page_size=9))
    assert len(pages) > CONTACTS // 9, "short pages: more pages than full ones would need"
    assert [r["contactid"] for page in pages for r in page] == expected
    top = sdk.records.list("contact", select=["fullname"], top=5, orderby=["fullname asc"])
    names = [r["fullname"] for r in top]
    assert len(names) == 5
    assert names == sorted(names, key=str.lower)


def test_create_get_update_delete(sdk: DataverseClient, web: WebApi) -> None:
    created = sdk.records.create("contact", {"firstname": "Ada", "lastname": "Lovelace"})
    got = sdk.records.retrieve("contact", created, select=["fullname", "firstname"])
    assert got is not None
    assert got["fullname"] == "Ada Lovelace", "fullname is composed from the first and last names"
    sdk.records.update("contact", created, {"lastname": "Byron", "emailaddress1": "ada@example.com"})
    stored = row(web, "contacts", created)
    assert (stored["fullname"], stored["emailaddress1"]) == ("Ada Byron", "ada@example.com")
    sdk.records.delete("contact", created)
    assert sdk.records.retrieve("contact", created) is None, "retrieve answers None for a 404"
    assert web.get(f"contacts({created})").json()["error"]["code"] == "0x80040217"


def test_upsert_creates_then_updates_by_key(sdk: DataverseClient, web: WebApi) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    sdk.records.upsert(
        "contact", [UpsertItem(alternate_key={"contactid": first}, record={"firstname": "Una"})]
    )
    assert row(web, "contacts", first)["fullname"] == "Una"
    sdk.records.upsert(
        "contact",
        [
            UpsertItem(alternate_key={"contactid": first}, record={"lastname": "Upserted"}),
            UpsertItem(alternate_key={"contactid": second}, record={"firstname": "Neu"}),
        ],
    )
    assert row(web, "contacts", first)["fullname"] == "Una Upserted"
    assert row(web, "contacts", second)["fullname"] == "Neu"


def test_create_multiple_and_update_multiple(
    sdk: DataverseClient, web: WebApi, control: EmulatorClient
) -> None:
    control.reset_stats()
    ids = sdk.records.create("contact", [{"firstname": f"Bulk {n}"} for n in range(3)])
    assert len(ids) == 3
    assert [row(web, "contacts", i)["firstname"] for i in ids] == ["Bulk 0", "Bulk 1", "Bulk 2"]
    sdk.records.update("contact", ids, {"emailaddress1": "bulk@example.com"})
    assert {row(web, "contacts", i)["emailaddress1"] for i in ids} == {"bulk@example.com"}
    requests = control.stats()["requests"]
    assert requests["create_multiple"] == 1
    assert requests["update_multiple"] == 1


def test_lookup_bind_and_clear(sdk: DataverseClient, web: WebApi) -> None:
    profile = web.get("msdynci_customerprofiles?$select=msdynci_customerprofileid&$top=1").json()["value"][0]
    profile_id = profile["msdynci_customerprofileid"]
    contact = contact_ids(web)[0]
    sdk.records.update("contact", contact, {f"{NAV}@odata.bind": f"/msdynci_customerprofiles({profile_id})"})
    assert row(web, "contacts", contact)[VALUE] == profile_id
    sdk.records.update("contact", contact, {NAV: None})
    assert row(web, "contacts", contact)[VALUE] is None


def test_associate_and_disassociate_are_not_in_the_sdk(sdk: DataverseClient) -> None:
    """The SDK has no associate or disassociate (``$ref``) operation; binds are its only way to link rows.

    The JavaScript client's conformance test covers every ``$ref`` form.
    """
    namespaces = (sdk, sdk.records, sdk.query, sdk.tables, sdk.batch)
    assert not [n for space in namespaces for n in dir(space) if "associat" in n.lower()]


def test_batch_with_a_change_set(sdk: DataverseClient, web: WebApi) -> None:
    contact = contact_ids(web)[0]
    batch = sdk.batch.new()
    batch.records.retrieve("contact", contact, select=["fullname"])
    with batch.changeset() as change_set:
        change_set.records.create("lead", {"firstname": "Batched", "lastname": "Lead"})
        change_set.records.update("contact", contact, {"emailaddress1": "batched@example.com"})
    result = batch.execute()
    statuses = [r.status_code for r in result.responses]
    assert statuses == [200, 204, 204], [(r.status_code, r.error_message) for r in result.responses]
    assert result.responses[0].data is not None
    assert result.responses[0].data["contactid"] == contact
    lead_id = result.responses[1].entity_id
    assert lead_id is not None
    assert row(web, "leads", lead_id)["fullname"] == "Batched Lead"
    assert row(web, "contacts", contact)["emailaddress1"] == "batched@example.com"


def test_count(sdk: DataverseClient, web: WebApi, control: EmulatorClient) -> None:
    """The SDK sends ``$count=true`` but drops ``@odata.count`` from what it returns: checked on the wire."""
    control.reset_stats()
    result = sdk.records.list("contact", select=["contactid"], filter="statecode eq 0", count=True)
    assert len(result) == CONTACTS
    assert control.stats()["requests"]["query"] == 1
    answer = web.get("contacts?$select=contactid&$filter=statecode eq 0&$count=true").json()
    assert answer["@odata.count"] == CONTACTS
    assert web.get("contacts/$count").text == str(CONTACTS)


def test_a_429_is_raised_with_its_retry_after_and_not_retried(
    sdk: DataverseClient, web: WebApi, control: EmulatorClient
) -> None:
    """The SDK does not retry a 429: it raises ``HttpError`` marked transient, with ``Retry-After``."""
    contact = contact_ids(web)[0]
    sdk.records.retrieve("contact", contact)  # resolves the entity set before the fault
    control.faults([{"kind": "throttle", "method": "GET", "path": "^contacts", "count": 1, "retry_after": 7}])
    with pytest.raises(HttpError) as throttled:
        sdk.records.retrieve("contact", contact)
    assert throttled.value.status_code == 429
    assert throttled.value.is_transient
    assert throttled.value.details["retry_after"] == 7
    again = sdk.records.retrieve("contact", contact)
    assert again is not None
    assert again["contactid"] == contact
    assert control.faults()["fired"] == [1]


def test_the_sdk_lower_cases_a_navigation_property_set_to_null(
    tls_server: EmulatorServer, control: EmulatorClient, web: WebApi
) -> None:
    """With a mixed-case navigation property, a bind keeps its case but ``{nav: None}`` is lower-cased.

    The SDK lower-cases every payload key without ``@odata.``, so clearing a lookup by its navigation
    property reaches the service as the lookup column's name, which is not writable: the emulator
    answers the 400 Dataverse gives for an invalid property, and the link stays.
    """
    mixed = "msdynci_LookupField_CustomerProfile"
    control.reset(
        contacts=CONTACTS,
        leads=0,
        seed=2,
        modes={"cid_lookup": "present", "cid_lookup_navigation_property": mixed},
    )
    profile = web.get("msdynci_customerprofiles?$select=msdynci_customerprofileid&$top=1").json()["value"][0]
    profile_id = profile["msdynci_customerprofileid"]
    contact = contact_ids(web)[0]
    with DataverseClient(tls_server.base_url, StaticCredential()) as client:
        client.records.update(
            "contact", contact, {f"{mixed}@odata.bind": f"/msdynci_customerprofiles({profile_id})"}
        )
        assert row(web, "contacts", contact)[VALUE] == profile_id
        with pytest.raises(HttpError) as refused:
            client.records.update("contact", contact, {mixed: None})
    assert refused.value.status_code == 400
    assert "Invalid property 'msdynci_lookupfield_customerprofile'" in str(refused.value)
    assert row(web, "contacts", contact)[VALUE] == profile_id
