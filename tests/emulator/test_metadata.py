"""The emulator's metadata, lookup creation and capability endpoints, over HTTP.

Covers ``EntityDefinitions`` (tables, columns, relationship collections), ``RelationshipDefinitions``
(read and ``POST``), the metadata delay and CI-D lookup modes, ``sdkmessagefilters`` and ``WhoAmI``, as
DATAVERSE.md describes them.
"""

from __future__ import annotations

import copy
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi
from tests.emulator.lookups import relationship_body

JSON = "application/json; odata.metadata=minimal"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PROFILE = "msdynci_customerprofile"
MAPPING_REL = "msdynci_customerprofile_msdynci_alternatekey"
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")
NO_CASCADE = dict.fromkeys(CASCADES, "NoCascade")
TABLE_SELECT = "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled,TableType"
STRONG = {"Consistency": "Strong"}
INVALID_DEFINITION = "0x80044363"
METADATA_EXISTS = "0x80047013"


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorClient:
    """The shared emulator reset to a small scene: metadata needs no row volume, and resets stay quick."""
    client = EmulatorClient(emulator_server.base_url)
    client.reset(contacts=30, leads=15, seed=7)
    return client


def assert_error(response: requests.Response, status: int, code: str, message: str) -> None:
    """A Dataverse error answer: exact status, JSON content type and ``{"error": {code, message}}``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == JSON
    assert response.headers["OData-Version"] == "4.0"
    assert response.json() == {"error": {"code": code, "message": message}}


def unknown_property(name: str, type_name: str) -> str:
    return f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."


def undeclared(entity_set: str, name: str) -> str:
    return (
        f"Error identified in Payload provided by the user for Entity :'{entity_set}'  ---->  "
        f"InnerException : Microsoft.OData.ODataException: An undeclared property '{name}' which only has "
        "property annotations in the payload but no property value was found in the payload. In OData, only "
        "declared navigation properties and declared named streams can be represented as properties without "
        "values."
    )


def label(text: str) -> dict[str, Any]:
    localized = {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [localized],
        "UserLocalizedLabel": localized,
    }


def create(api: WebApi, body: Any) -> requests.Response:
    return api.post(
        "RelationshipDefinitions", json=body, headers={"MSCRM.SolutionUniqueName": "BackstampHydration"}
    )


def created_id(api: WebApi, response: requests.Response) -> str:
    """The MetadataId an ``OData-EntityId`` header names, after checking the header's exact form."""
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["OData-Version"] == "4.0"
    match = re.fullmatch(
        re.escape(api.api_url) + r"RelationshipDefinitions\(([0-9a-f-]{36})\)",
        response.headers["OData-EntityId"],
    )
    assert match, response.headers["OData-EntityId"]
    assert GUID.match(match.group(1))
    return match.group(1)


def many_to_one(api: WebApi, table: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = api.get(
        f"EntityDefinitions(LogicalName='{table}')/ManyToOneRelationships"
        f"?$filter=ReferencedEntity eq '{PROFILE}'",
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["@odata.context"] == (
        f"{api.api_url}$metadata#EntityDefinitions('{table}')/ManyToOneRelationships"
    )
    return list(response.json()["value"])


def attribute(api: WebApi, table: str, name: str, headers: dict[str, str] | None = None) -> requests.Response:
    return api.get(
        f"EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{name}')", headers=headers
    )


def first_id(api: WebApi, entity_set: str, key: str) -> str:
    response = api.get(f"{entity_set}?$select={key}&$top=1")
    assert response.status_code == 200, response.text
    return str(response.json()["value"][0][key])


def metadata_snapshot(api: WebApi) -> dict[str, Any]:
    """Everything a relationship creation could change, read with ``Consistency: Strong``."""
    paths = [
        "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,SchemaName,AttributeType",
        "EntityDefinitions(LogicalName='lead')/Attributes?$select=LogicalName,SchemaName,AttributeType",
        "EntityDefinitions(LogicalName='msdynci_alternatekey')/Attributes?$select=LogicalName,AttributeType",
        "EntityDefinitions(LogicalName='contact')/ManyToOneRelationships",
        "EntityDefinitions(LogicalName='lead')/ManyToOneRelationships",
        "EntityDefinitions(LogicalName='msdynci_customerprofile')/OneToManyRelationships",
    ]
    snapshot = {}
    for path in paths:
        response = api.get(path, headers=STRONG)
        assert response.status_code == 200, response.text
        snapshot[path] = response.json()["value"]
    return snapshot


# -- EntityDefinitions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "entity_set", "key", "tracking", "table_type"),
    [
        ("contact", "contacts", "contactid", True, "Standard"),
        ("lead", "leads", "leadid", False, "Standard"),
        (
            "msdynci_customerprofile",
            "msdynci_customerprofiles",
            "msdynci_customerprofileid",
            False,
            "Elastic",
        ),
        ("msdynci_alternatekey", "msdynci_alternatekeys", "msdynci_alternatekeyid", False, "Elastic"),
    ],
)
def test_table_definition_with_select(
    api: WebApi, table: str, entity_set: str, key: str, tracking: bool, table_type: str
) -> None:
    response = api.get(f"EntityDefinitions(LogicalName='{table}')?$select={TABLE_SELECT}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON
    assert response.headers["OData-Version"] == "4.0"
    body = response.json()
    assert GUID.match(body["MetadataId"])
    assert body == {
        "@odata.context": f"{api.api_url}$metadata#EntityDefinitions/$entity",
        "MetadataId": body["MetadataId"],
        "LogicalName": table,
        "EntitySetName": entity_set,
        "PrimaryIdAttribute": key,
        "ChangeTrackingEnabled": tracking,
        "TableType": table_type,
    }
    again = api.get(f"EntityDefinitions(LogicalName='{table}')?$select=LogicalName").json()
    assert again["MetadataId"] == body["MetadataId"]
    assert set(again) == {"@odata.context", "MetadataId", "LogicalName"}


def test_table_metadata_ids_differ_between_tables(api: WebApi) -> None:
    ids = {
        api.get(f"EntityDefinitions(LogicalName='{t}')?$select=LogicalName").json()["MetadataId"]
        for t in ("contact", "lead", PROFILE, "msdynci_alternatekey")
    }
    assert len(ids) == 4


def test_table_definition_without_select_has_every_property(api: WebApi) -> None:
    response = api.get("EntityDefinitions(LogicalName='contact')")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "@odata.context": f"{api.api_url}$metadata#EntityDefinitions/$entity",
        "MetadataId": body["MetadataId"],
        "LogicalName": "contact",
        "SchemaName": "Contact",
        "EntitySetName": "contacts",
        "LogicalCollectionName": "contacts",
        "PrimaryIdAttribute": "contactid",
        "PrimaryNameAttribute": "fullname",
        "ObjectTypeCode": 2,
        "TableType": "Standard",
        "ChangeTrackingEnabled": True,
        "IsCustomEntity": False,
        "DisplayName": label("Contact"),
        "Privileges": body["Privileges"],
    }
    assert [(p["Name"], p["PrivilegeType"]) for p in body["Privileges"]][:3] == [
        ("prvCreateContact", "Create"),
        ("prvReadContact", "Read"),
        ("prvWriteContact", "Write"),
    ]
    profile = api.get(f"EntityDefinitions(LogicalName='{PROFILE}')").json()
    assert (profile["TableType"], profile["PrimaryNameAttribute"], profile["IsCustomEntity"]) == (
        "Elastic",
        "msdynci_customerid",
        True,
    )


def test_every_property_of_a_table_can_be_selected_alone(api: WebApi) -> None:
    full = api.get("EntityDefinitions(LogicalName='lead')").json()
    for name in full:
        if name.startswith("@") or name == "MetadataId":
            continue
        response = api.get(f"EntityDefinitions(LogicalName='lead')?$select={name}")
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {
            "@odata.context": full["@odata.context"],
            "MetadataId": full["MetadataId"],
            name: full[name],
        }


@pytest.mark.parametrize("select", ["LogicalName,Nope", "logicalname", "EntitySetName,Targets"])
def test_table_select_of_an_unknown_property_is_400(api: WebApi, select: str) -> None:
    bad = next(n for n in select.split(",") if n not in ("LogicalName", "EntitySetName"))
    response = api.get(f"EntityDefinitions(LogicalName='contact')?$select={select}")
    assert_error(response, 400, "0x80060888", unknown_property(bad, "EntityMetadata"))


def test_table_select_syntax_error_is_400(api: WebApi) -> None:
    response = api.get("EntityDefinitions(LogicalName='contact')?$select=LogicalName,,TableType")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"


@pytest.mark.parametrize("table", ["account", "nosuch", "contacts"])
def test_unknown_table_is_404_from_the_metadata_cache(api: WebApi, table: str) -> None:
    message = (
        f"The entity with a name = '{table}' with namemapping = 'Logical' was not found in the MetadataCache."
    )
    assert_error(api.get(f"EntityDefinitions(LogicalName='{table}')"), 404, "0x80041102", message)
    assert_error(
        api.get(f"EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='fullname')"),
        404,
        "0x80041102",
        message,
    )
    assert_error(
        api.get(f"EntityDefinitions(LogicalName='{table}')/ManyToOneRelationships"),
        404,
        "0x80041102",
        message,
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [("$top", "1"), ("$skip", "1"), ("$orderby", "LogicalName"), ("$filter", "LogicalName eq 'contact'")],
)
def test_unsupported_query_option_on_a_table_is_400(api: WebApi, option: str, value: str) -> None:
    response = api.get(f"EntityDefinitions(LogicalName='contact')?$select=LogicalName&{option}={value}")
    assert_error(response, 400, "0x80060888", f"The query parameter {option} is not supported")


# -- Attributes ----------------------------------------------------------------------------------------


def test_normal_column(api: WebApi) -> None:
    response = attribute(api, "contact", "emailaddress1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert GUID.match(body["MetadataId"])
    assert body == {
        "@odata.context": f"{api.api_url}$metadata#EntityDefinitions('contact')/Attributes/$entity",
        "@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "MetadataId": body["MetadataId"],
        "LogicalName": "emailaddress1",
        "SchemaName": "emailaddress1",
        "EntityLogicalName": "contact",
        "AttributeType": "String",
        "AttributeTypeName": {"Value": "StringType"},
        "IsPrimaryId": False,
        "IsCustomAttribute": False,
        "IsValidForRead": True,
        "IsValidForUpdate": True,
        "DisplayName": label("emailaddress1"),
        "MaxLength": 100,
    }


def test_primary_key_column(api: WebApi) -> None:
    body = attribute(api, "lead", "leadid").json()
    assert body["@odata.type"] == "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata"
    assert (body["LogicalName"], body["AttributeType"], body["AttributeTypeName"]) == (
        "leadid",
        "Uniqueidentifier",
        {"Value": "UniqueidentifierType"},
    )
    assert body["IsPrimaryId"] is True
    assert "Targets" not in body


def test_read_only_column(api: WebApi) -> None:
    body = attribute(api, "contact", "modifiedon").json()
    assert (body["@odata.type"], body["AttributeType"], body["IsValidForUpdate"]) == (
        "#Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
        "DateTime",
        False,
    )


def test_lookup_column_names_its_targets(api: WebApi) -> None:
    response = attribute(api, "msdynci_alternatekey", "msdynci_lookupfield_customer")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.type"] == "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    assert (body["LogicalName"], body["AttributeType"], body["AttributeTypeName"]) == (
        "msdynci_lookupfield_customer",
        "Lookup",
        {"Value": "LookupType"},
    )
    assert body["Targets"] == [PROFILE]
    assert body["IsPrimaryId"] is False


def test_partition_id_companion_of_a_lookup_to_an_elastic_table(api: WebApi) -> None:
    response = attribute(api, "msdynci_alternatekey", "msdynci_lookupfield_customerpid")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["@odata.type"], body["LogicalName"], body["AttributeType"], body["EntityLogicalName"]) == (
        "#Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "msdynci_lookupfield_customerpid",
        "String",
        "msdynci_alternatekey",
    )
    assert "Targets" not in body


def test_column_select_keeps_metadata_id_and_type(api: WebApi) -> None:
    response = api.get(
        "EntityDefinitions(LogicalName='msdynci_alternatekey')/Attributes(LogicalName='msdynci_lookupfield_customer')"
        "?$select=LogicalName,Targets"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"@odata.context", "@odata.type", "MetadataId", "LogicalName", "Targets"}
    assert body["Targets"] == [PROFILE]
    bad = api.get(
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='fullname')?$select=Targets"
    )
    assert_error(bad, 400, "0x80060888", unknown_property("Targets", "AttributeMetadata"))
    top = api.get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='fullname')?$top=1")
    assert_error(top, 400, "0x80060888", "The query parameter $top is not supported")


@pytest.mark.parametrize(
    ("table", "name"), [("contact", "nope"), ("contact", "leadid"), ("lead", "_x_value")]
)
def test_missing_column_is_404(api: WebApi, table: str, name: str) -> None:
    assert_error(
        attribute(api, table, name),
        404,
        "0x80041103",
        f"'{table}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'.",
    )


def test_attribute_collection_lists_every_column(api: WebApi) -> None:
    response = api.get("EntityDefinitions(LogicalName='contact')/Attributes")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{api.api_url}$metadata#EntityDefinitions('contact')/Attributes"
    names = {a["LogicalName"] for a in body["value"]}
    assert names == {
        "contactid",
        "createdon",
        "modifiedon",
        "versionnumber",
        "statecode",
        "fullname",
        "firstname",
        "lastname",
        "emailaddress1",
    }
    assert all(a["EntityLogicalName"] == "contact" for a in body["value"])


def test_attribute_collection_with_filter_and_select(api: WebApi) -> None:
    base = "EntityDefinitions(LogicalName='msdynci_alternatekey')/Attributes"
    response = api.get(f"{base}?$select=LogicalName,AttributeType&$filter=AttributeType eq 'Lookup'")
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    assert value == [
        {
            "@odata.type": "#Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "MetadataId": value[0]["MetadataId"],
            "LogicalName": "msdynci_lookupfield_customer",
            "AttributeType": "Lookup",
        }
    ]
    primary = api.get(f"{base}?$select=LogicalName&$filter=IsPrimaryId eq true").json()["value"]
    assert [a["LogicalName"] for a in primary] == ["msdynci_alternatekeyid"]
    either = api.get(
        f"{base}?$select=LogicalName&$filter=LogicalName eq 'msdynci_keyring' or AttributeType eq 'BigInt'"
    ).json()["value"]
    assert sorted(a["LogicalName"] for a in either) == ["msdynci_keyring", "versionnumber"]
    none = api.get(f"{base}?$filter=LogicalName eq 'nothing'").json()["value"]
    assert none == []


@pytest.mark.parametrize(
    ("query", "status", "code", "message"),
    [
        ("$select=LogicalName,Targets", 400, "0x80060888", unknown_property("Targets", "AttributeMetadata")),
        ("$filter=Nope eq 'x'", 400, "0x80060888", unknown_property("Nope", "AttributeMetadata")),
        (
            "$filter=LogicalName eq 'nothing'&$select=Nope",
            400,
            "0x80060888",
            unknown_property("Nope", "AttributeMetadata"),
        ),
        (
            "$filter=startswith(LogicalName,'full')",
            400,
            "0x8006088a",
            'The "startswith" function isn\'t supported for Metadata Entities.',
        ),
        ("$orderby=LogicalName", 400, "0x80060888", "The query parameter $orderby is not supported"),
        ("$top=2", 400, "0x80060888", "The query parameter $top is not supported"),
    ],
)
def test_attribute_collection_refuses_bad_queries(
    api: WebApi, query: str, status: int, code: str, message: str
) -> None:
    response = api.get(f"EntityDefinitions(LogicalName='contact')/Attributes?{query}")
    assert_error(response, status, code, message)


def test_attribute_filter_type_mismatch_is_400(api: WebApi) -> None:
    response = api.get("EntityDefinitions(LogicalName='contact')/Attributes?$filter=IsPrimaryId eq 'yes'")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "0x80060888"


# -- RelationshipDefinitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [MAPPING_REL, MAPPING_REL.upper(), "MsDynCi_CustomerProfile_msdynci_AlternateKey"]
)
def test_relationship_by_schema_name_ignores_case(api: WebApi, name: str) -> None:
    response = api.get(f"RelationshipDefinitions(SchemaName='{name}')")
    assert response.status_code == 200, response.text
    body = response.json()
    assert GUID.match(body["MetadataId"])
    assert body == {
        "@odata.context": f"{api.api_url}$metadata#RelationshipDefinitions/$entity",
        "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "MetadataId": body["MetadataId"],
        "SchemaName": MAPPING_REL,
        "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": PROFILE,
        "ReferencedAttribute": "msdynci_customerprofileid",
        "ReferencingEntity": "msdynci_alternatekey",
        "ReferencingAttribute": "msdynci_lookupfield_customer",
        "ReferencingEntityNavigationPropertyName": "msdynci_lookupfield_customer",
        "ReferencedEntityNavigationPropertyName": MAPPING_REL,
        "IsCustomRelationship": True,
        "CascadeConfiguration": NO_CASCADE,
    }


def test_relationship_with_cast_segment_and_select(api: WebApi) -> None:
    plain = api.get(f"RelationshipDefinitions(SchemaName='{MAPPING_REL}')").json()
    cast = api.get(
        f"RelationshipDefinitions(SchemaName='{MAPPING_REL}')/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    )
    assert cast.status_code == 200, cast.text
    assert cast.json() == plain
    selected = api.get(
        f"RelationshipDefinitions(SchemaName='{MAPPING_REL}')/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
        "?$select=SchemaName,ReferencingEntityNavigationPropertyName"
    )
    assert selected.status_code == 200, selected.text
    assert selected.json() == {
        "@odata.context": plain["@odata.context"],
        "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "MetadataId": plain["MetadataId"],
        "SchemaName": MAPPING_REL,
        "ReferencingEntityNavigationPropertyName": "msdynci_lookupfield_customer",
    }
    by_id = api.get(f"RelationshipDefinitions({plain['MetadataId']})")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == plain
    assert api.get(f"RelationshipDefinitions({plain['MetadataId'].upper()})").json() == plain


def test_relationship_select_of_unknown_property_is_400(api: WebApi) -> None:
    response = api.get(f"RelationshipDefinitions(SchemaName='{MAPPING_REL}')?$select=SchemaName,Nope")
    assert_error(response, 400, "0x80060888", unknown_property("Nope", "RelationshipMetadataBase"))


def test_missing_relationship_is_404(api: WebApi) -> None:
    assert_error(
        api.get("RelationshipDefinitions(SchemaName='new_customerprofile_contact')"),
        404,
        "0x80040217",
        "Could not find a relationship with SchemaName = 'new_customerprofile_contact'.",
    )
    missing = "0b9d6a4e-1111-4222-8333-944455556666"
    assert_error(
        api.get(f"RelationshipDefinitions({missing})"),
        404,
        "0x80040217",
        f"Could not find a relationship with MetadataId = '{missing}'.",
    )


def test_relationship_collections_before_any_lookup_is_created(api: WebApi) -> None:
    assert many_to_one(api, "contact") == []
    assert many_to_one(api, "lead") == []
    # The filter's property is checked against the type, even when nothing is there to filter.
    bad = api.get(
        "EntityDefinitions(LogicalName='contact')/ManyToOneRelationships?$filter=ReferencedEntityy eq 'x'"
    )
    assert_error(
        bad, 400, "0x80060888", unknown_property("ReferencedEntityy", "OneToManyRelationshipMetadata")
    )
    bad = api.get("EntityDefinitions(LogicalName='contact')/ManyToOneRelationships?$select=Nope")
    assert_error(bad, 400, "0x80060888", unknown_property("Nope", "OneToManyRelationshipMetadata"))
    one_to_many = api.get(
        f"EntityDefinitions(LogicalName='{PROFILE}')/OneToManyRelationships?$select=SchemaName,ReferencingEntity"
    )
    assert one_to_many.status_code == 200, one_to_many.text
    value = one_to_many.json()["value"]
    assert value == [
        {
            "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "MetadataId": value[0]["MetadataId"],
            "SchemaName": MAPPING_REL,
            "ReferencingEntity": "msdynci_alternatekey",
        }
    ]
    mapping = many_to_one(api, "msdynci_alternatekey")
    assert [r["SchemaName"] for r in mapping] == [MAPPING_REL]


# -- Creating the product's lookup ---------------------------------------------------------------------


def test_create_lookup_relationship(api: WebApi) -> None:
    response = create(api, relationship_body())
    metadata_id = created_id(api, response)

    by_id = api.get(response.headers["OData-EntityId"])
    assert by_id.status_code == 200, by_id.text
    rel = by_id.json()
    assert rel == {
        "@odata.context": f"{api.api_url}$metadata#RelationshipDefinitions/$entity",
        "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "MetadataId": metadata_id,
        "SchemaName": "new_customerprofile_contact",
        "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": PROFILE,
        "ReferencedAttribute": "msdynci_customerprofileid",
        "ReferencingEntity": "contact",
        "ReferencingAttribute": "new_customerprofile",
        "ReferencingEntityNavigationPropertyName": "new_CustomerProfile",
        "ReferencedEntityNavigationPropertyName": "new_customerprofile_contact",
        "IsCustomRelationship": True,
        "CascadeConfiguration": NO_CASCADE,
    }
    assert api.get("RelationshipDefinitions(SchemaName='NEW_CustomerProfile_Contact')").json() == rel
    cast = api.get(
        "RelationshipDefinitions(SchemaName='new_customerprofile_contact')"
        "/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata?$select=ReferencingEntityNavigationPropertyName"
    )
    assert cast.json()["ReferencingEntityNavigationPropertyName"] == "new_CustomerProfile"

    lookup = attribute(api, "contact", "new_customerprofile")
    assert lookup.status_code == 200, lookup.text
    body = lookup.json()
    assert (body["@odata.type"], body["SchemaName"], body["AttributeType"], body["Targets"]) == (
        "#Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        "new_CustomerProfile",
        "Lookup",
        [PROFILE],
    )
    assert body["DisplayName"] == label("Customer Profile")
    assert body["IsCustomAttribute"] is True
    pid = attribute(api, "contact", "new_customerprofilepid")
    assert pid.status_code == 200, pid.text
    assert (pid.json()["AttributeType"], pid.json()["LogicalName"]) == ("String", "new_customerprofilepid")
    assert attribute(api, "lead", "new_customerprofile").status_code == 404

    assert [r["MetadataId"] for r in many_to_one(api, "contact")] == [metadata_id]
    assert many_to_one(api, "contact")[0] == {k: v for k, v in rel.items() if k != "@odata.context"}
    assert many_to_one(api, "lead") == []
    one_to_many = api.get(
        f"EntityDefinitions(LogicalName='{PROFILE}')/OneToManyRelationships?$select=SchemaName"
        "&$filter=ReferencingEntity eq 'contact'"
    ).json()["value"]
    assert [r["SchemaName"] for r in one_to_many] == ["new_customerprofile_contact"]


def test_create_accepts_optional_cascades_and_a_hash_type(api: WebApi) -> None:
    body = relationship_body("new_customerprofile_lead", "new_CustomerProfile", "lead")
    body["@odata.type"] = "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    body["CascadeConfiguration"] |= {"RollupView": "NoCascade", "Archive": "NoCascade"}
    created_id(api, create(api, body))
    assert [r["SchemaName"] for r in many_to_one(api, "lead")] == ["new_customerprofile_lead"]


def test_new_lookup_is_readable_filterable_and_bindable(api: WebApi, emulator: EmulatorClient) -> None:
    before = api.get("contacts?$select=_new_customerprofile_value")
    assert_error(before, 400, "0x80060888", unknown_property("_new_customerprofile_value", "contact"))
    created_id(api, create(api, relationship_body()))

    contact = first_id(api, "contacts", "contactid")
    profile = first_id(api, "msdynci_customerprofiles", "msdynci_customerprofileid")
    unset = api.get(
        f"contacts?$select=_new_customerprofile_value&$filter=_new_customerprofile_value eq {profile}"
    )
    assert unset.status_code == 200, unset.text
    assert unset.json()["value"] == []

    bind = api.patch(
        f"contacts({contact})",
        json={"new_CustomerProfile@odata.bind": f"msdynci_customerprofiles({profile})"},
        headers={"If-Match": "*"},
    )
    assert bind.status_code == 204, bind.text

    found = api.get(
        f"contacts?$select=_new_customerprofile_value,new_customerprofilepid"
        f"&$filter=_new_customerprofile_value eq {profile}"
    )
    assert found.status_code == 200, found.text
    rows = found.json()["value"]
    assert [(r["contactid"], r["_new_customerprofile_value"], r["new_customerprofilepid"]) for r in rows] == [
        (contact, profile, None)
    ]
    links = emulator.links("contact", rows="all", lookup="new_customerprofile")
    assert links["navigation_property"] == "new_CustomerProfile"
    assert [r["id"] for r in links["rows"] if r["current"] == profile] == [contact]

    second = api.get("msdynci_customerprofiles?$select=msdynci_customerprofileid&$top=2").json()["value"][1]
    other_profile = second["msdynci_customerprofileid"]
    assert other_profile != profile
    wrong_case = api.patch(
        f"contacts({contact})",
        json={"new_customerprofile@odata.bind": f"msdynci_customerprofiles({other_profile})"},
        headers={"If-Match": "*"},
    )
    assert_error(wrong_case, 400, "0x80048d19", undeclared("contacts", "new_customerprofile"))
    kept = api.get(f"contacts({contact})?$select=_new_customerprofile_value").json()
    assert kept["_new_customerprofile_value"] == profile
    other = first_id(api, "leads", "leadid")
    on_lead = api.patch(
        f"leads({other})",
        json={"new_CustomerProfile@odata.bind": f"msdynci_customerprofiles({profile})"},
        headers={"If-Match": "*"},
    )
    assert_error(on_lead, 400, "0x80048d19", undeclared("leads", "new_CustomerProfile"))


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


def _with(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


RELATIONSHIP_TYPE = "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
LOOKUP_TYPE = "Microsoft.Dynamics.CRM.LookupAttributeMetadata"
WRONG_TYPE = f"The '@odata.type' of a relationship definition must be '{RELATIONSHIP_TYPE}'."
BAD_LOOKUP = f"'Lookup' must be a '{LOOKUP_TYPE}'."
BASE = relationship_body()


def _cascade_error(name: str) -> str:
    return (
        f"Cascade configuration '{name}' must be 'NoCascade' for a relationship with the elastic table "
        f"'{PROFILE}'."
    )


def _schema_error(name: str) -> str:
    return (
        f"'{name}' is not a valid schema name: it needs a publisher prefix and only letters, digits and "
        "underscores."
    )


def _invalid(case: str, body: dict[str, Any], message: str) -> Any:
    return pytest.param(body, message, id=case)


INVALID_BODIES = [
    _invalid(
        "wrong type",
        _with(BASE, "Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata", "@odata.type"),
        WRONG_TYPE,
    ),
    _invalid("missing type", _without(BASE, "@odata.type"), WRONG_TYPE),
    *[
        _invalid(f"no {field}", _without(BASE, field), f"The required field '{field}' is missing.")
        for field in ("SchemaName", "ReferencedEntity", "ReferencedAttribute", "ReferencingEntity", "Lookup")
    ],
    _invalid(
        "empty SchemaName", _with(BASE, "", "SchemaName"), "The required field 'SchemaName' is missing."
    ),
    _invalid("lookup without type", _without(BASE, "Lookup", "@odata.type"), BAD_LOOKUP),
    _invalid(
        "lookup of string type",
        _with(BASE, "Microsoft.Dynamics.CRM.StringAttributeMetadata", "Lookup", "@odata.type"),
        BAD_LOOKUP,
    ),
    _invalid("lookup not an object", _with(BASE, "new_CustomerProfile", "Lookup"), BAD_LOOKUP),
    _invalid(
        "lookup AttributeType",
        _with(BASE, "String", "Lookup", "AttributeType"),
        "The AttributeType of 'Lookup' must be 'Lookup', not 'String'.",
    ),
    _invalid(
        "lookup without SchemaName",
        _without(BASE, "Lookup", "SchemaName"),
        "The required field 'Lookup.SchemaName' is missing.",
    ),
    _invalid(
        "schema name without prefix",
        _with(BASE, "customerprofilecontact", "SchemaName"),
        _schema_error("customerprofilecontact"),
    ),
    _invalid(
        "schema name with a space",
        _with(BASE, "new_customer profile", "SchemaName"),
        _schema_error("new_customer profile"),
    ),
    _invalid(
        "lookup name without prefix",
        _with(BASE, "CustomerProfile", "Lookup", "SchemaName"),
        _schema_error("CustomerProfile"),
    ),
    _invalid(
        "lookup name starting with a digit",
        _with(BASE, "1new_CustomerProfile", "Lookup", "SchemaName"),
        _schema_error("1new_CustomerProfile"),
    ),
    _invalid(
        "delete cascades", _with(BASE, "Cascade", "CascadeConfiguration", "Delete"), _cascade_error("Delete")
    ),
    _invalid(
        "assign restricted",
        _with(BASE, "Restrict", "CascadeConfiguration", "Assign"),
        _cascade_error("Assign"),
    ),
    _invalid(
        "rollup view cascades",
        _with(BASE, "Cascade", "CascadeConfiguration", "RollupView"),
        _cascade_error("RollupView"),
    ),
    _invalid("unshare missing", _without(BASE, "CascadeConfiguration", "Unshare"), _cascade_error("Unshare")),
    _invalid("no cascade configuration", _without(BASE, "CascadeConfiguration"), _cascade_error("Assign")),
    _invalid(
        "unknown cascade",
        _with(BASE, "NoCascade", "CascadeConfiguration", "Explode"),
        "Invalid cascade configuration 'Explode': 'NoCascade'.",
    ),
    _invalid(
        "unknown cascade value",
        _with(BASE, "Sometimes", "CascadeConfiguration", "Share"),
        "Invalid cascade configuration 'Share': 'Sometimes'.",
    ),
    _invalid(
        "cascade not an object",
        _with(BASE, "NoCascade", "CascadeConfiguration"),
        "'CascadeConfiguration' must be an object.",
    ),
    _invalid(
        "referenced attribute not the key",
        _with(BASE, "msdynci_customerid", "ReferencedAttribute"),
        f"ReferencedAttribute must be the primary key 'msdynci_customerprofileid' of '{PROFILE}'.",
    ),
]


def _refused_without_change(api: WebApi, body: Any, status: int, code: str, message: str) -> None:
    before = metadata_snapshot(api)
    assert_error(create(api, body), status, code, message)
    assert metadata_snapshot(api) == before
    assert (
        api.get(
            "RelationshipDefinitions(SchemaName='new_customerprofile_contact')", headers=STRONG
        ).status_code
        == 404
    )
    assert attribute(api, "contact", "new_customerprofile", headers=STRONG).status_code == 404
    # Nothing half-registered stands in the way of the correct request.
    created_id(api, create(api, relationship_body()))


@pytest.mark.parametrize(("body", "message"), INVALID_BODIES)
def test_invalid_relationship_is_refused_and_changes_nothing(api: WebApi, body: Any, message: str) -> None:
    _refused_without_change(api, body, 400, INVALID_DEFINITION, message)


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("ReferencedEntity", "msdynci_nosuch"),
        ("ReferencingEntity", "account"),
        ("ReferencingEntity", "contacts"),
    ],
)
def test_relationship_with_an_unknown_table_is_404(api: WebApi, field: str, name: str) -> None:
    body = _with(BASE, name, field)
    _refused_without_change(api, body, 404, "0x80040217", f"Could not find entity with name '{name}'.")


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"[1, 2]", "0x80060888", "The request body must be a JSON object."),
        (b'"text"', "0x80060888", "The request body must be a JSON object."),
    ],
)
def test_relationship_body_that_is_not_an_object_is_400(
    api: WebApi, payload: bytes, code: str, message: str
) -> None:
    response = api.post("RelationshipDefinitions", data=payload, headers={"Content-Type": "application/json"})
    assert_error(response, 400, code, message)


def test_relationship_body_that_is_not_json_is_400(api: WebApi) -> None:
    response = api.post(
        "RelationshipDefinitions", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80048d19"
    assert response.json()["error"]["message"].startswith("Error in parsing the request content")


def test_duplicate_relationship_schema_name_is_refused(api: WebApi) -> None:
    created_id(api, create(api, relationship_body()))
    before = metadata_snapshot(api)
    again = create(api, relationship_body("NEW_CustomerProfile_Contact", "new_OtherProfile"))
    assert_error(
        again,
        400,
        METADATA_EXISTS,
        "A relationship with the name NEW_CustomerProfile_Contact already exists.",
    )
    # Even on another table, a relationship name is unique in the organization.
    on_lead = create(api, relationship_body("new_customerprofile_contact", "new_CustomerProfile", "lead"))
    assert_error(
        on_lead,
        400,
        METADATA_EXISTS,
        "A relationship with the name new_customerprofile_contact already exists.",
    )
    assert metadata_snapshot(api) == before
    assert attribute(api, "contact", "new_otherprofile", headers=STRONG).status_code == 404


def test_duplicate_lookup_name_is_refused(api: WebApi) -> None:
    created_id(api, create(api, relationship_body()))
    before = metadata_snapshot(api)
    again = create(api, relationship_body("new_profile_contact_2", "NEW_customerprofile"))
    assert_error(
        again,
        400,
        METADATA_EXISTS,
        "An attribute with the name NEW_customerprofile already exists on contact.",
    )
    # A lookup whose name is the new partition id column is also taken.
    pid = create(api, relationship_body("new_profile_contact_3", "new_CustomerProfilePid"))
    assert_error(
        pid,
        400,
        METADATA_EXISTS,
        "An attribute with the name new_CustomerProfilePid already exists on contact.",
    )
    builtin = create(
        api, relationship_body("new_mapping_again", "msdynci_LookupField_Customer", "msdynci_alternatekey")
    )
    assert_error(
        builtin,
        400,
        METADATA_EXISTS,
        "An attribute with the name msdynci_LookupField_Customer already exists on msdynci_alternatekey.",
    )
    assert metadata_snapshot(api) == before
    assert (
        api.get("RelationshipDefinitions(SchemaName='new_profile_contact_2')", headers=STRONG).status_code
        == 404
    )


def test_concurrent_creations_of_the_same_lookup_leave_one(api: WebApi, emulator: EmulatorClient) -> None:
    sessions = [emulator.web_api(f"worker-{i}") for i in range(8)]
    barrier = threading.Barrier(len(sessions))

    def attempt(session: WebApi) -> requests.Response:
        barrier.wait()
        return create(session, relationship_body())

    with ThreadPoolExecutor(len(sessions)) as pool:
        answers = list(pool.map(attempt, sessions))
    for session in sessions:
        session.close()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [204] + [400] * 7, [a.text for a in answers]
    refusals = [a.json() for a in answers if a.status_code == 400]
    assert (
        refusals
        == [
            {
                "error": {
                    "code": METADATA_EXISTS,
                    "message": "A relationship with the name new_customerprofile_contact already exists.",
                }
            }
        ]
        * 7
    )
    assert len(many_to_one(api, "contact")) == 1
    columns = api.get(
        "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName"
        "&$filter=LogicalName eq 'new_customerprofile' or LogicalName eq 'new_customerprofilepid'"
    ).json()["value"]
    assert sorted(c["LogicalName"] for c in columns) == ["new_customerprofile", "new_customerprofilepid"]


def test_same_lookup_name_on_another_table_is_allowed(api: WebApi) -> None:
    created_id(api, create(api, relationship_body()))
    created_id(api, create(api, relationship_body("new_customerprofile_lead", "new_CustomerProfile", "lead")))
    assert [r["ReferencingEntityNavigationPropertyName"] for r in many_to_one(api, "lead")] == [
        "new_CustomerProfile"
    ]


# -- Metadata delay ------------------------------------------------------------------------------------


def test_metadata_delay_hides_new_items_until_strong_or_time_passes(
    api: WebApi, emulator: EmulatorClient
) -> None:
    emulator.modes(metadata_delay_seconds=60)
    response = create(api, relationship_body())
    metadata_id = created_id(api, response)
    contact = first_id(api, "contacts", "contactid")
    profile = first_id(api, "msdynci_customerprofiles", "msdynci_customerprofileid")
    bind = {"new_CustomerProfile@odata.bind": f"msdynci_customerprofiles({profile})"}

    def hidden() -> None:
        assert api.get("RelationshipDefinitions(SchemaName='new_customerprofile_contact')").status_code == 404
        assert api.get(response.headers["OData-EntityId"]).status_code == 404
        assert attribute(api, "contact", "new_customerprofile").status_code == 404
        assert attribute(api, "contact", "new_customerprofilepid").status_code == 404
        assert many_to_one(api, "contact") == []
        names = {
            a["LogicalName"]
            for a in api.get("EntityDefinitions(LogicalName='contact')/Attributes").json()["value"]
        }
        assert "new_customerprofile" not in names
        # Strong consistency sees it at once.
        strong = api.get("RelationshipDefinitions(SchemaName='new_customerprofile_contact')", headers=STRONG)
        assert strong.status_code == 200
        assert strong.json()["MetadataId"] == metadata_id
        assert api.get(response.headers["OData-EntityId"], headers=STRONG).status_code == 200
        assert attribute(api, "contact", "new_customerprofile", headers=STRONG).json()["Targets"] == [PROFILE]
        assert [r["MetadataId"] for r in many_to_one(api, "contact", STRONG)] == [metadata_id]
        refused = api.patch(f"contacts({contact})", json=bind, headers={"If-Match": "*"})
        assert_error(refused, 400, "0x80048d19", undeclared("contacts", "new_CustomerProfile"))

    hidden()
    # Creating it again while it is still hidden is still a duplicate.
    assert_error(
        create(api, relationship_body()),
        400,
        METADATA_EXISTS,
        "A relationship with the name new_customerprofile_contact already exists.",
    )
    emulator.advance_clock(59)
    hidden()
    emulator.advance_clock(2)
    assert api.get("RelationshipDefinitions(SchemaName='new_customerprofile_contact')").status_code == 200
    assert attribute(api, "contact", "new_customerprofile").status_code == 200
    assert [r["MetadataId"] for r in many_to_one(api, "contact")] == [metadata_id]
    bound = api.patch(f"contacts({contact})", json=bind, headers={"If-Match": "*"})
    assert bound.status_code == 204, bound.text
    row = api.get(f"contacts({contact})?$select=_new_customerprofile_value")
    assert row.status_code == 200, row.text
    assert row.json()["_new_customerprofile_value"] == profile


def test_without_delay_new_items_are_visible_at_once(api: WebApi, emulator: EmulatorClient) -> None:
    assert emulator.modes()["metadata_delay_seconds"] == 0
    created_id(api, create(api, relationship_body()))
    assert api.get("RelationshipDefinitions(SchemaName='new_customerprofile_contact')").status_code == 200
    assert attribute(api, "contact", "new_customerprofile").status_code == 200


# -- CI-D's own lookup ---------------------------------------------------------------------------------


def test_cid_lookup_absent_by_default(api: WebApi) -> None:
    assert attribute(api, "contact", "msdynci_lookupfield_customerprofile").status_code == 404
    assert api.get("RelationshipDefinitions(SchemaName='msdynci_customerprofile_contact')").status_code == 404


def test_cid_lookup_present(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=20, leads=10, seed=7, modes={"cid_lookup": "present"})
    with emulator.web_api() as api:
        for table, entity_set in (("contact", "contacts"), ("lead", "leads")):
            column = attribute(api, table, "msdynci_lookupfield_customerprofile")
            assert column.status_code == 200, column.text
            body = column.json()
            assert (body["AttributeType"], body["Targets"], body["DisplayName"]) == (
                "Lookup",
                [PROFILE],
                label("Customer Profile"),
            )
            assert attribute(api, table, "msdynci_lookupfield_customerprofilepid").status_code == 200
            rels = many_to_one(api, table)
            assert [
                (r["SchemaName"], r["ReferencingAttribute"], r["ReferencingEntityNavigationPropertyName"])
                for r in rels
            ] == [
                (
                    f"msdynci_customerprofile_{table}",
                    "msdynci_lookupfield_customerprofile",
                    "msdynci_lookupfield_customerprofile",
                )
            ]
            assert rels[0]["CascadeConfiguration"] == NO_CASCADE
            row = api.get(f"{entity_set}?$select=_msdynci_lookupfield_customerprofile_value&$top=1")
            assert row.status_code == 200, row.text
        # The product's own lookup can sit next to CI-D's.
        created_id(api, create(api, relationship_body()))
        assert sorted(r["SchemaName"] for r in many_to_one(api, "contact")) == [
            "msdynci_customerprofile_contact",
            "new_customerprofile_contact",
        ]


def test_cid_lookup_navigation_property_case_is_exact(emulator: EmulatorClient) -> None:
    nav = "msdynci_LookupField_CustomerProfile"
    emulator.reset(
        contacts=20, leads=10, seed=7, modes={"cid_lookup": "present", "cid_lookup_navigation_property": nav}
    )
    with emulator.web_api() as api:
        rel = api.get("RelationshipDefinitions(SchemaName='msdynci_customerprofile_contact')").json()
        assert rel["ReferencingEntityNavigationPropertyName"] == nav
        assert rel["ReferencingAttribute"] == "msdynci_lookupfield_customerprofile"
        column = attribute(api, "contact", "msdynci_lookupfield_customerprofile").json()
        assert (column["LogicalName"], column["SchemaName"]) == ("msdynci_lookupfield_customerprofile", nav)

        contact = first_id(api, "contacts", "contactid")
        profile = first_id(api, "msdynci_customerprofiles", "msdynci_customerprofileid")
        target = f"msdynci_customerprofiles({profile})"
        for name in (
            "msdynci_lookupfield_customerprofile",
            "msdynci_lookupfield_CustomerProfile",
            nav.upper(),
        ):
            refused = api.patch(
                f"contacts({contact})", json={f"{name}@odata.bind": target}, headers={"If-Match": "*"}
            )
            assert_error(refused, 400, "0x80048d19", undeclared("contacts", name))
        value = f"contacts({contact})?$select=_msdynci_lookupfield_customerprofile_value"
        assert api.get(value).json()["_msdynci_lookupfield_customerprofile_value"] is None
        bound = api.patch(
            f"contacts({contact})", json={f"{nav}@odata.bind": target}, headers={"If-Match": "*"}
        )
        assert bound.status_code == 204, bound.text
        assert api.get(value).json()["_msdynci_lookupfield_customerprofile_value"] == profile


# -- sdkmessagefilters ---------------------------------------------------------------------------------


def _message_filters(api: WebApi, message: str, table: str) -> list[dict[str, Any]]:
    response = api.get(
        "sdkmessagefilters?$select=sdkmessagefilterid"
        f"&$filter=sdkmessageid/name eq '{message}' and primaryobjecttypecode eq '{table}'"
    )
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


def test_update_multiple_support_is_answered_by_sdkmessagefilters(
    api: WebApi, emulator: EmulatorClient
) -> None:
    rows = _message_filters(api, "UpdateMultiple", "contact")
    assert len(rows) == 1
    assert set(rows[0]) == {"@odata.etag", "sdkmessagefilterid"}
    assert GUID.match(rows[0]["sdkmessagefilterid"])
    assert len(_message_filters(api, "UpdateMultiple", "lead")) == 1
    assert len(_message_filters(api, "UpdateMultiple", PROFILE)) == 1
    assert _message_filters(api, "UpdateMultiple", "msdynci_alternatekey") == []
    assert _message_filters(api, "UpdateMultiple", "account") == []

    emulator.modes(update_multiple={"contact": False, "lead": True, "msdynci_customerprofile": True})
    assert _message_filters(api, "UpdateMultiple", "contact") == []
    assert len(_message_filters(api, "UpdateMultiple", "lead")) == 1
    # Other messages of the table are still there.
    assert len(_message_filters(api, "Update", "contact")) == 1

    emulator.modes(update_multiple={"contact": True, "lead": True, "msdynci_customerprofile": True})
    assert [r["sdkmessagefilterid"] for r in _message_filters(api, "UpdateMultiple", "contact")] == [
        rows[0]["sdkmessagefilterid"]
    ]


# -- WhoAmI and common headers -------------------------------------------------------------------------


def test_whoami(api: WebApi, emulator: EmulatorClient) -> None:
    response = api.get("WhoAmI")
    assert response.status_code == 200, response.text
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["Content-Type"] == JSON
    assert response.headers["x-ms-dop-hint"] == "4"
    body = response.json()
    assert set(body) == {"@odata.context", "BusinessUnitId", "UserId", "OrganizationId"}
    assert body["@odata.context"] == f"{api.api_url}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
    for key in ("BusinessUnitId", "UserId", "OrganizationId"):
        assert GUID.match(body[key]), key
    assert api.get("WhoAmI()").json() == body
    with emulator.web_api("other-user") as other:
        theirs = other.get("WhoAmI").json()
    assert theirs["UserId"] != body["UserId"]
    assert (theirs["OrganizationId"], theirs["BusinessUnitId"]) == (
        body["OrganizationId"],
        body["BusinessUnitId"],
    )
    emulator.reset(contacts=5, leads=5, seed=3)
    assert api.get("WhoAmI").json() == body


def test_dop_hint_follows_the_mode_on_every_answer(api: WebApi, emulator: EmulatorClient) -> None:
    emulator.modes(dop_hint=11)
    answers = [
        api.get("WhoAmI"),
        api.get("contacts?$select=fullname&$top=1"),
        api.get("EntityDefinitions(LogicalName='contact')?$select=LogicalName"),
        api.get("EntityDefinitions(LogicalName='nosuch')"),
        create(api, relationship_body()),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 204]
    assert [a.headers["x-ms-dop-hint"] for a in answers] == ["11"] * len(answers)
    assert all(a.headers["OData-Version"] == "4.0" for a in answers)


def test_date_header_follows_the_emulator_clock(api: WebApi, emulator: EmulatorClient) -> None:
    def server_date() -> datetime:
        return parsedate_to_datetime(api.get("WhoAmI").headers["Date"])

    def emulator_now() -> datetime:
        return datetime.fromtimestamp(emulator.now() / 1_000_000, UTC)

    assert abs((server_date() - emulator_now()).total_seconds()) <= 2
    host = datetime.now(UTC)
    emulator.advance_clock(3 * 86_400)
    moved = server_date()
    assert abs((moved - emulator_now()).total_seconds()) <= 2
    assert (moved - host).total_seconds() >= 3 * 86_400 - 2
