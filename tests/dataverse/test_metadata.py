"""Metadata against the emulator over HTTP: table facts, finding, reusing and creating the profile lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.dataverse import odata
from hydration.dataverse.client import DataverseClient
from hydration.dataverse.errors import AuthError, FatalError, NotFoundError, RetriableError
from hydration.dataverse.metadata import (
    PROFILE_TABLE,
    LookupInfo,
    LookupMissingError,
    LookupNotVisibleError,
    LookupSpec,
    Metadata,
    TableInfo,
    backoff,
    provision,
)

from .conftest import EmulatorClock, Recorder

CID_ATTRIBUTE = "msdynci_lookupfield_customerprofile"
CID_NAVIGATION = "msdynci_LookupField_CustomerProfile"
CUSTOM = LookupSpec(
    schema_name="new_CustomerProfile",
    relationship_name="new_customerprofile_{table}",
    display_name="Unified profile",
    solution="HydrationSolution",
)
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")


@pytest.fixture
def metadata(client: DataverseClient, emulator_clock: EmulatorClock) -> Metadata:
    return Metadata(client, clock=emulator_clock)


def created_relationships(control: EmulatorClient) -> int:
    return int(control.stats()["requests"].get("create_relationship", 0))


def first_id(control: EmulatorClient, entity_set: str, key: str) -> str:
    with control.web_api("tester") as api:
        response = api.get(f"{entity_set}?$select={key}&$top=1")
        assert response.status_code == 200, response.text
        return str(response.json()["value"][0][key])


def bind_and_read(client: DataverseClient, control: EmulatorClient, info: LookupInfo) -> None:
    """PATCH a contact's lookup through the navigation property, then read the value back."""
    contact = first_id(control, "contacts", "contactid")
    profile = first_id(control, "msdynci_customerprofiles", "msdynci_customerprofileid")
    client.request(
        "PATCH",
        f"contacts({contact})",
        kind="update",
        json_body={f"{info.navigation_property}@odata.bind": f"msdynci_customerprofiles({profile})"},
        headers={"If-Match": "*"},
    )
    value = odata.lookup_value(info.attribute)
    row = client.get_json(f"contacts({contact})?$select={value}", kind="retrieve")
    assert row[value] == profile


def raw_relationship(control: EmulatorClient, *, schema: str, lookup: str, table: str, target: str) -> None:
    """Create a lookup outside the product (another admin, CI-D, a concurrent worker)."""
    label = {"LocalizedLabels": [{"Label": lookup, "LanguageCode": 1033}]}
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": schema,
        "ReferencedEntity": target,
        "ReferencedAttribute": f"{target}id",
        "ReferencingEntity": table,
        "CascadeConfiguration": dict.fromkeys(CASCADES, "NoCascade"),
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": lookup,
            "DisplayName": label,
            "RequiredLevel": {"Value": "None"},
        },
    }
    with control.web_api("admin") as api:
        response = api.post("RelationshipDefinitions", json=body)
        assert response.status_code == 204, response.text


# -- tables -------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("contact", TableInfo("contact", "contacts", "contactid", "Standard", True)),
        ("lead", TableInfo("lead", "leads", "leadid", "Standard", False)),
        (
            PROFILE_TABLE,
            TableInfo(
                PROFILE_TABLE, "msdynci_customerprofiles", "msdynci_customerprofileid", "Elastic", False
            ),
        ),
        (
            "msdynci_alternatekey",
            TableInfo(
                "msdynci_alternatekey", "msdynci_alternatekeys", "msdynci_alternatekeyid", "Elastic", False
            ),
        ),
    ],
)
def test_table_info(metadata: Metadata, table: str, expected: TableInfo) -> None:
    info = metadata.table(table)
    assert info == expected
    assert info.elastic == (expected.table_type == "Elastic")


@pytest.mark.integration
def test_table_info_is_cached(metadata: Metadata, client: DataverseClient) -> None:
    first = metadata.table("contact")
    requests_before = client.counters.requests
    assert metadata.table("contact") is first
    assert client.counters.requests == requests_before


@pytest.mark.integration
def test_unknown_table_is_not_found_with_its_name(metadata: Metadata) -> None:
    with pytest.raises(NotFoundError, match="'account' does not exist") as caught:
        metadata.table("account")
    assert caught.value.status == 404


@pytest.mark.integration
@pytest.mark.parametrize("name", ["Contact", "contact'", "contact')/Attributes", "", "1contact", "con tact"])
@pytest.mark.parametrize(
    "call",
    [
        lambda m, name: m.table(name),
        lambda m, name: m.find_lookup(name, LookupSpec()),
        lambda m, name: m.ensure_lookup(name, LookupSpec(), allow_create=True),
        lambda m, name: m.supports_update_multiple(name),
        lambda m, name: provision(m, ["contact", name], LookupSpec()),
    ],
    ids=["table", "find_lookup", "ensure_lookup", "supports_update_multiple", "provision"],
)
def test_invalid_table_names_never_reach_a_request(
    metadata: Metadata, client: DataverseClient, name: str, call: Callable[[Metadata, str], Any]
) -> None:
    with pytest.raises(odata.InvalidNameError):
        call(metadata, name)
    assert client.counters.requests == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"schema_name": "fullname"},  # no publisher prefix
        {"schema_name": "new_Customer Profile"},
        {"schema_name": "new_Customer'Profile"},
        {"schema_name": "_customerprofile"},
        {"relationship_name": "bad name {table}"},
        {"relationship_name": "new_x_{table}')"},
        {"display_name": "  "},
        {"solution": "My Solution"},
        {"solution": "sol\r\nX-Injected: 1"},
    ],
)
def test_invalid_lookup_specs_are_refused_at_construction(changes: dict[str, str]) -> None:
    with pytest.raises(odata.InvalidNameError):
        LookupSpec(**changes)


def test_lookup_spec_names() -> None:
    assert LookupSpec().attribute == CID_ATTRIBUTE
    assert LookupSpec().relationship("lead") == "msdynci_customerprofile_lead"
    assert CUSTOM.attribute == "new_customerprofile"
    assert CUSTOM.relationship("contact") == "new_customerprofile_contact"


def test_backoff_doubles_the_wait_and_is_capped() -> None:
    waited, pauses = 0.0, []
    for _ in range(9):
        pauses.append(backoff(waited))
        waited += pauses[-1]
    assert pauses == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


# -- UpdateMultiple and membership ----------------------------------------------------------------------


@pytest.mark.integration
def test_supports_update_multiple_follows_the_organization(
    metadata: Metadata, control: EmulatorClient, client: DataverseClient
) -> None:
    control.modes(update_multiple={"contact": False, "lead": True, PROFILE_TABLE: True})
    assert metadata.supports_update_multiple("contact") is False
    assert metadata.supports_update_multiple("lead") is True
    before = client.counters.requests
    assert metadata.supports_update_multiple("contact") is False  # cached
    assert client.counters.requests == before
    control.modes(update_multiple={"contact": True})
    assert Metadata(client).supports_update_multiple("contact") is True


@pytest.mark.integration
def test_a_user_outside_the_organization_gets_an_auth_error(
    metadata: Metadata, control: EmulatorClient
) -> None:
    control.modes(users=["someone-else"])
    with pytest.raises(AuthError, match="not a member"):
        metadata.table("contact")
    with pytest.raises(AuthError):
        metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)


# -- creating the lookup -------------------------------------------------------------------------------


@pytest.mark.integration
def test_creates_the_lookup_when_missing(
    metadata: Metadata, client: DataverseClient, control: EmulatorClient, recorder: Recorder
) -> None:
    assert metadata.find_lookup("contact", LookupSpec()) is None

    info = metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)

    assert info == LookupInfo(
        table="contact",
        attribute=CID_ATTRIBUTE,
        navigation_property=CID_ATTRIBUTE,
        relationship="msdynci_customerprofile_contact",
        partition_column=f"{CID_ATTRIBUTE}pid",
        created=True,
    )
    assert created_relationships(control) == 1
    [post] = recorder.posts()
    assert "MSCRM.SolutionUniqueName" not in post.headers
    lists = [s.url for s in recorder.sent if "/ManyToOneRelationships?" in s.url]
    assert lists[0].endswith(
        "EntityDefinitions(LogicalName='contact')/ManyToOneRelationships?$select=SchemaName,ReferencingAttribute,"
        "ReferencingEntityNavigationPropertyName,ReferencedEntity"
        "&$filter=ReferencedEntity%20eq%20'msdynci_customerprofile'"
    )
    links = control.links("contact", rows="none")
    assert (links["lookup"], links["navigation_property"]) == (CID_ATTRIBUTE, CID_ATTRIBUTE)
    bind_and_read(client, control, info)


@pytest.mark.integration
def test_the_create_request_is_the_documented_body(metadata: Metadata, recorder: Recorder) -> None:
    metadata.ensure_lookup("lead", CUSTOM, allow_create=True)

    [post] = recorder.posts()
    assert post.url.endswith("/api/data/v9.2/RelationshipDefinitions")
    assert post.headers["MSCRM.SolutionUniqueName"] == "HydrationSolution"
    assert post.json == {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": "new_customerprofile_lead",
        "ReferencedEntity": "msdynci_customerprofile",
        "ReferencedAttribute": "msdynci_customerprofileid",
        "ReferencingEntity": "lead",
        "CascadeConfiguration": dict.fromkeys(CASCADES, "NoCascade"),
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": "new_CustomerProfile",
            "DisplayName": {
                "@odata.type": "Microsoft.Dynamics.CRM.Label",
                "LocalizedLabels": [
                    {
                        "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                        "Label": "Unified profile",
                        "LanguageCode": 1033,
                    }
                ],
            },
            "RequiredLevel": {"Value": "None"},
        },
    }


@pytest.mark.integration
def test_custom_names(metadata: Metadata, client: DataverseClient, control: EmulatorClient) -> None:
    info = metadata.ensure_lookup("contact", CUSTOM, allow_create=True)

    assert (info.attribute, info.navigation_property, info.relationship) == (
        "new_customerprofile",
        "new_CustomerProfile",
        "new_customerprofile_contact",
    )
    assert info.partition_column == "new_customerprofilepid"
    assert info.created
    assert control.links("contact", rows="none")["navigation_property"] == "new_CustomerProfile"
    bind_and_read(client, control, info)


@pytest.mark.integration
def test_an_existing_lookup_is_reused_later(
    metadata: Metadata, client: DataverseClient, control: EmulatorClient
) -> None:
    metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)
    before = client.counters.requests
    again = metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)
    assert not again.created
    assert client.counters.requests == before  # cached for this object's lifetime

    fresh = Metadata(client).ensure_lookup("contact", LookupSpec(), allow_create=False)
    assert fresh == again
    assert created_relationships(control) == 1


@pytest.mark.integration
def test_reuses_cid_lookup_with_its_exact_navigation_property(
    metadata: Metadata, client: DataverseClient, control: EmulatorClient, reseed: Callable[..., None]
) -> None:
    reseed(cid_lookup="present", cid_lookup_navigation_property=CID_NAVIGATION)
    control.reset_stats()

    info = metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)

    assert info.navigation_property == CID_NAVIGATION
    assert (info.attribute, info.relationship, info.created) == (
        CID_ATTRIBUTE,
        "msdynci_customerprofile_contact",
        False,
    )
    assert metadata.find_lookup("lead", LookupSpec()) is not None
    assert "create_relationship" not in control.stats()["requests"]
    bind_and_read(client, control, info)


@pytest.mark.integration
def test_missing_lookup_without_permission_to_create(metadata: Metadata, control: EmulatorClient) -> None:
    with pytest.raises(LookupMissingError, match="python -m hydration provision") as caught:
        metadata.ensure_lookup("contact", LookupSpec(), allow_create=False)
    assert isinstance(caught.value, FatalError)
    assert "create_relationship" not in control.stats()["requests"]


@pytest.mark.integration
def test_creating_without_customization_rights_says_to_provision(
    metadata: Metadata, control: EmulatorClient, recorder: Recorder
) -> None:
    control.modes(users=["app"])

    def as_intruder(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if method == "POST" and url.endswith(
            "RelationshipDefinitions"
        ):  # the emulator has no roles: 403 another way
            kwargs["headers"] = {**kwargs["headers"], "Authorization": "Bearer intruder"}

    recorder.hooks.append(as_intruder)
    with pytest.raises(AuthError, match="customization privileges") as caught:
        metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)
    assert "python -m hydration provision" in caught.value.message
    assert caught.value.status == 403


# -- waiting for new metadata ----------------------------------------------------------------------------


@pytest.mark.integration
def test_waits_until_new_metadata_is_visible(
    metadata: Metadata,
    client: DataverseClient,
    control: EmulatorClient,
    emulator_clock: EmulatorClock,
    recorder: Recorder,
) -> None:
    control.modes(metadata_delay_seconds=120)

    info = metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)

    assert info.created
    assert info.partition_column == f"{CID_ATTRIBUTE}pid"
    assert any(s.headers.get("Consistency") == "Strong" for s in recorder.sent)
    assert 120 <= sum(emulator_clock.pauses) <= 300
    assert len(emulator_clock.pauses) < 12
    bind_and_read(client, control, info)


@pytest.mark.integration
def test_times_out_when_new_metadata_stays_invisible(
    client: DataverseClient, control: EmulatorClient, emulator_clock: EmulatorClock
) -> None:
    control.modes(metadata_delay_seconds=120)
    emulator_clock.moves_emulator = False
    metadata = Metadata(client, clock=emulator_clock, visibility_timeout=30)

    with pytest.raises(LookupNotVisibleError) as caught:
        metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)

    assert isinstance(caught.value, RetriableError)
    assert caught.value.created
    assert sum(emulator_clock.pauses) == pytest.approx(30)

    # The queue's retry, once the metadata has spread: the lookup is found, not created again.
    control.advance_clock(120)
    again = Metadata(client).ensure_lookup("contact", LookupSpec(), allow_create=False)
    assert not again.created
    assert created_relationships(control) == 1


@pytest.mark.integration
def test_a_lookup_made_moments_ago_is_awaited_not_reported_missing(
    metadata: Metadata, control: EmulatorClient, emulator_clock: EmulatorClock
) -> None:
    control.modes(metadata_delay_seconds=60)
    raw_relationship(
        control,
        schema="msdynci_customerprofile_contact",
        lookup=CID_ATTRIBUTE,
        table="contact",
        target=PROFILE_TABLE,
    )

    info = metadata.ensure_lookup("contact", LookupSpec(), allow_create=False)

    assert not info.created
    assert sum(emulator_clock.pauses) >= 60


@pytest.mark.integration
def test_a_concurrent_creator_wins_and_its_lookup_is_reused(
    metadata: Metadata, client: DataverseClient, control: EmulatorClient, recorder: Recorder
) -> None:
    def competitor(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if method == "POST" and url.endswith("RelationshipDefinitions") and not recorder.posts():
            raw_relationship(
                control,
                schema="msdynci_customerprofile_contact",
                lookup=CID_ATTRIBUTE,
                table="contact",
                target=PROFILE_TABLE,
            )

    recorder.hooks.append(competitor)

    info = metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)

    assert not info.created
    assert info.navigation_property == CID_ATTRIBUTE
    assert control.stats()["statuses"].get("400") == 1  # our create was refused as a duplicate
    bind_and_read(client, control, info)


# -- conflicts -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_column_of_that_name_that_is_not_a_lookup_is_a_conflict(
    metadata: Metadata, control: EmulatorClient
) -> None:
    spec = LookupSpec(schema_name="msdynci_entityname")  # a text column of the mapping table
    with pytest.raises(FatalError, match="not a lookup to msdynci_customerprofile") as caught:
        metadata.ensure_lookup("msdynci_alternatekey", spec, allow_create=True)
    assert "String" in caught.value.message
    assert "create_relationship" not in control.stats()["requests"]


@pytest.mark.integration
def test_a_lookup_to_another_table_is_a_conflict(metadata: Metadata, control: EmulatorClient) -> None:
    raw_relationship(control, schema="new_lead_contact", lookup="new_Lead", table="contact", target="lead")
    with pytest.raises(FatalError, match="not a lookup to msdynci_customerprofile"):
        metadata.find_lookup("contact", LookupSpec(schema_name="new_Lead"))
    with pytest.raises(FatalError):
        metadata.ensure_lookup("contact", LookupSpec(schema_name="new_Lead"), allow_create=True)
    assert created_relationships(control) == 1  # only the scene's own


@pytest.mark.integration
def test_a_relationship_name_taken_by_another_lookup_is_a_conflict(
    metadata: Metadata, control: EmulatorClient
) -> None:
    raw_relationship(
        control,
        schema="msdynci_customerprofile_contact",
        lookup="new_Other",
        table="contact",
        target=PROFILE_TABLE,
    )
    with pytest.raises(FatalError, match="configure another relationship name"):
        metadata.ensure_lookup("contact", LookupSpec(), allow_create=True)


# -- provision -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_provision_contact_and_lead(
    metadata: Metadata, client: DataverseClient, control: EmulatorClient
) -> None:
    infos = provision(metadata, ["contact", "lead"], LookupSpec())

    assert [(i.table, i.created) for i in infos] == [("contact", True), ("lead", True)]
    for table in ("contact", "lead"):
        assert control.links(table, rows="none")["lookup"] == CID_ATTRIBUTE

    again = provision(Metadata(client), ["contact", "lead"], LookupSpec())
    assert [(i.table, i.created) for i in again] == [("contact", False), ("lead", False)]
    assert created_relationships(control) == 2
