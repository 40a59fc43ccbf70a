"""Creating the product's lookup to the profile table through the emulator's Web API, for tests."""

from __future__ import annotations

from typing import Any

from dataverse_emulator.client import WebApi

PROFILE = "msdynci_customerprofile"
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")
NO_CASCADE = dict.fromkeys(CASCADES, "NoCascade")


def relationship_body(
    schema_name: str = "new_customerprofile_contact",
    lookup_name: str = "new_CustomerProfile",
    referencing: str = "contact",
) -> dict[str, Any]:
    """The body DATAVERSE.md gives for creating the product's lookup to the profile table."""
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": schema_name,
        "ReferencedEntity": PROFILE,
        "ReferencedAttribute": "msdynci_customerprofileid",
        "ReferencingEntity": referencing,
        "CascadeConfiguration": dict(NO_CASCADE),
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": lookup_name,
            "DisplayName": {
                "@odata.type": "Microsoft.Dynamics.CRM.Label",
                "LocalizedLabels": [
                    {
                        "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                        "Label": "Customer Profile",
                        "LanguageCode": 1033,
                    }
                ],
            },
            "RequiredLevel": {"Value": "None"},
        },
    }


def create_lookup(api: WebApi, table: str = "contact", lookup_name: str = "new_CustomerProfile") -> None:
    """Create a lookup from ``table`` to the profile table, as the product does (204 expected)."""
    body = relationship_body(f"{lookup_name.lower()}_{table}", lookup_name, table)
    response = api.post("RelationshipDefinitions", json=body)
    assert response.status_code == 204, response.text
