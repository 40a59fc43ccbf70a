"""Metadata collections, MetadataId addressing, type casts and ``$expand`` of option sets, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from dataverse_emulator.client import WebApi

from .lookups import create_lookup

CRM = "Microsoft.Dynamics.CRM."


def value(api: WebApi, path: str) -> list[dict[str, Any]]:
    response = api.get(path)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["value"]
    return items


def error(api: WebApi, path: str) -> tuple[int, str, str]:
    response = api.get(path)
    body = response.json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_entity_definitions_collection_with_select_and_filter(api: WebApi) -> None:
    everything = value(api, "EntityDefinitions?$select=LogicalName,EntitySetName")
    assert {e["LogicalName"] for e in everything} == {
        "contact",
        "lead",
        "msdynci_customerprofile",
        "msdynci_alternatekey",
        "sdkmessagefilter",
        "sdkmessage",
        "sdkmessageprocessingstep",
        "workflow",
    }
    assert all(set(e) == {"MetadataId", "LogicalName", "EntitySetName"} for e in everything)
    one = value(
        api, "EntityDefinitions?$select=EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'contact'"
    )
    assert [(e["EntitySetName"], e["PrimaryIdAttribute"]) for e in one] == [("contacts", "contactid")]
    elastic = value(api, "EntityDefinitions?$select=LogicalName&$filter=TableType eq 'Elastic'")
    assert sorted(e["LogicalName"] for e in elastic) == ["msdynci_alternatekey", "msdynci_customerprofile"]
    assert value(api, "EntityDefinitions?$filter=LogicalName eq 'account'") == []
    status, code, _ = error(api, "EntityDefinitions?$select=Nope")
    assert (status, code) == (400, "0x80060888")
    assert error(api, "EntityDefinitions?$top=1")[0] == 400


def test_metadata_id_addresses_tables_and_attributes(api: WebApi) -> None:
    table = api.get("EntityDefinitions(LogicalName='lead')?$select=MetadataId").json()
    by_id = api.get(f"EntityDefinitions({table['MetadataId']})?$select=LogicalName")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["LogicalName"] == "lead"
    column = api.get(f"EntityDefinitions({table['MetadataId']})/Attributes(LogicalName='companyname')").json()
    again = api.get(f"EntityDefinitions(LogicalName='lead')/Attributes({column['MetadataId']})").json()
    assert again == column
    missing = "0b9d6a4e-1111-4222-8333-944455556666"
    assert error(api, f"EntityDefinitions({missing})") == (
        404,
        "0x80041102",
        f"The entity with a MetadataId = '{missing}' was not found in the MetadataCache.",
    )
    assert error(api, f"EntityDefinitions(LogicalName='lead')/Attributes({missing})")[:2] == (
        404,
        "0x80041103",
    )


def test_enum_literals_filter_metadata(api: WebApi) -> None:
    create_lookup(api)
    base = "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName"
    lookups = value(api, f"{base}&$filter=AttributeType eq {CRM}AttributeTypeCode'Lookup'")
    assert [a["LogicalName"] for a in lookups] == ["new_customerprofile"]
    assert value(api, f"{base}&$filter=AttributeType eq 'Lookup'") == lookups
    others = value(api, f"{base}&$filter=AttributeType ne {CRM}AttributeTypeCode'String'")
    assert "fullname" not in {a["LogicalName"] for a in others}
    relationships = value(
        api,
        f"RelationshipDefinitions?$filter=RelationshipType eq {CRM}RelationshipType'OneToManyRelationship'",
    )
    assert {r["SchemaName"] for r in relationships} >= {"new_customerprofile_contact"}


def test_type_casts_narrow_attributes_and_name_derived_properties(api: WebApi) -> None:
    base = "EntityDefinitions(LogicalName='contact')/Attributes"
    base_cast = f"Attributes/{CRM}PicklistAttributeMetadata"
    picklists = api.get(
        f"{base}/{CRM}PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)"
    )
    assert picklists.status_code == 200, picklists.text
    assert picklists.json() == {
        "@odata.context": f"{api.api_url}$metadata#EntityDefinitions('contact')/{base_cast}",
        "value": [],
    }
    strings = value(api, f"{base}/{CRM}StringAttributeMetadata?$select=LogicalName,MaxLength")
    assert {(a["LogicalName"], a["MaxLength"]) for a in strings} == {
        (name, 100) for name in ("fullname", "firstname", "lastname", "emailaddress1")
    }
    assert error(api, f"{base}?$select=MaxLength")[:2] == (400, "0x80060888"), "derived: only through a cast"
    assert error(api, f"{base}/{CRM}NoSuchAttributeMetadata")[0] == 400
    assert error(api, f"{base}(LogicalName='fullname')/{CRM}LookupAttributeMetadata")[:2] == (
        404,
        "0x80041103",
    )


def test_option_sets_come_with_expand(api: WebApi) -> None:
    column = "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statecode')"
    base = f"{column}/{CRM}StateAttributeMetadata"
    body = api.get(f"{base}?$select=LogicalName&$expand=OptionSet($select=Options)").json()
    assert set(body) == {"@odata.context", "@odata.type", "MetadataId", "LogicalName", "OptionSet"}
    options = body["OptionSet"]["Options"]
    assert [(o["Value"], o["Label"]["LocalizedLabels"][0]["Label"], o["DefaultStatus"]) for o in options] == [
        (0, "Active", 1),
        (1, "Inactive", 2),
    ]
    states = value(
        api, f"EntityDefinitions(LogicalName='lead')/Attributes/{CRM}EnumAttributeMetadata?$expand=OptionSet"
    )
    assert [a["LogicalName"] for a in states] == ["statecode"]
    assert states[0]["OptionSet"]["Name"] == "lead_statecode"
    assert error(api, "EntityDefinitions(LogicalName='lead')/Attributes?$expand=OptionSet")[0] == 400
    assert error(api, f"{base}?$expand=OptionSet($select=Nope)")[0] == 400


def test_relationship_definitions_collection_and_empty_children(api: WebApi) -> None:
    create_lookup(api)
    cast = f"RelationshipDefinitions/{CRM}OneToManyRelationshipMetadata"
    found = value(
        api,
        f"{cast}?$select=SchemaName,ReferencingEntity&$filter=ReferencedEntity eq 'msdynci_customerprofile'",
    )
    assert sorted((r["SchemaName"], r["ReferencingEntity"]) for r in found) == [
        ("msdynci_customerprofile_msdynci_alternatekey", "msdynci_alternatekey"),
        ("new_customerprofile_contact", "contact"),
    ]
    assert error(api, "RelationshipDefinitions?$filter=ReferencedEntity eq 'x'")[:2] == (400, "0x80060888")
    assert value(api, f"RelationshipDefinitions/{CRM}ManyToManyRelationshipMetadata") == []
    assert value(api, "EntityDefinitions(LogicalName='contact')/ManyToManyRelationships") == []
    assert value(api, "EntityDefinitions(LogicalName='contact')/Keys?$select=LogicalName") == []


@pytest.mark.parametrize(
    "path",
    [
        "GlobalOptionSetDefinitions",
        "EntityDefinitions/Attributes",
        "EntityDefinitions(SchemaName='Contact')",
        "EntityDefinitions(LogicalName='contact')/Nope",
        "RelationshipDefinitions(LogicalName='x')",
        "EntityDefinitions(x)",
    ],
)
def test_unimplemented_or_malformed_metadata_addresses_answer_an_error(api: WebApi, path: str) -> None:
    status, code, message = error(api, path)
    assert status in (400, 404)
    assert code.startswith("0x")
    assert message
