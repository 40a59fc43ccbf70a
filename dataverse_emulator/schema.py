"""Table, column and relationship metadata: what ``EntityDefinitions`` and friends answer.

The catalog is small (a handful of tables), so it lives in memory; row data lives in SQLite
(``store``). Creating a relationship adds a lookup column to the referencing table, in the catalog and
in the store, and the catalog remembers when each new item becomes visible so a metadata delay can be
emulated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .values import EdmType

_NAMESPACE = uuid.UUID("6f1c2f9e-5a7b-4a3e-9c1d-2b8e7f4a0c11")


def metadata_id(*parts: str) -> str:
    """A stable MetadataId for a named item, so answers are repeatable across runs."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


ENTITY_PRIVILEGE_TYPES = ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign", "Share")
"""The privilege types every table has (``PrivilegeType``), in the order Dataverse lists them."""


def privilege_name(kind: str, schema_name: str) -> str:
    """A table privilege's name as Dataverse forms it: ``prvReadContact``, ``prvAppendTomsdynci_x``."""
    return f"prv{kind}{schema_name}"


def privileges_json(schema_name: str) -> list[dict[str, Any]]:
    """A table's ``Privileges`` (``SecurityPrivilegeMetadata``): what a role can grant on it."""
    return [
        {
            "CanBeBasic": True,
            "CanBeDeep": True,
            "CanBeGlobal": True,
            "CanBeLocal": True,
            "CanBeEntityReference": False,
            "CanBeParentEntityReference": False,
            "Name": privilege_name(kind, schema_name),
            "PrivilegeId": metadata_id("privilege", privilege_name(kind, schema_name)),
            "PrivilegeType": kind,
        }
        for kind in ENTITY_PRIVILEGE_TYPES
    ]


class AttributeType(StrEnum):
    """Dataverse attribute types the emulator's tables use, with their OData metadata type."""

    UNIQUEIDENTIFIER = "Uniqueidentifier"
    STRING = "String"
    MEMO = "Memo"
    DATETIME = "DateTime"
    LOOKUP = "Lookup"
    INTEGER = "Integer"
    BIGINT = "BigInt"
    BOOLEAN = "Boolean"
    STATE = "State"

    @property
    def edm(self) -> EdmType:
        """The OData primitive type a value of this attribute has in queries."""
        return {
            AttributeType.UNIQUEIDENTIFIER: EdmType.GUID,
            AttributeType.LOOKUP: EdmType.GUID,
            AttributeType.STRING: EdmType.STRING,
            AttributeType.MEMO: EdmType.STRING,
            AttributeType.DATETIME: EdmType.DATETIME,
            AttributeType.INTEGER: EdmType.INT32,
            AttributeType.STATE: EdmType.INT32,
            AttributeType.BIGINT: EdmType.INT64,
            AttributeType.BOOLEAN: EdmType.BOOLEAN,
        }[self]

    @property
    def metadata_type(self) -> str:
        """The ``@odata.type`` of this attribute's metadata record."""
        name = {
            AttributeType.UNIQUEIDENTIFIER: "UniqueIdentifier",
            AttributeType.BIGINT: "BigInt",
        }.get(self, self.value)
        return f"#Microsoft.Dynamics.CRM.{name}AttributeMetadata"


@dataclass
class Attribute:
    """One column of a table."""

    logical_name: str
    schema_name: str
    type: AttributeType
    display_name: str = ""
    targets: tuple[str, ...] = ()
    read_only: bool = False
    visible_at: int = 0

    @property
    def query_name(self) -> str:
        """The name used in ``$select`` and ``$filter``: lookups read as ``_<name>_value``."""
        if self.type is AttributeType.LOOKUP:
            return f"_{self.logical_name}_value"
        return self.logical_name


@dataclass
class Relationship:
    """A one-to-many relationship and the navigation property of its lookup."""

    schema_name: str
    referenced_entity: str
    referenced_attribute: str
    referencing_entity: str
    referencing_attribute: str
    navigation_property: str
    cascade: dict[str, str]
    solution: str | None = None
    visible_at: int = 0

    @property
    def metadata_id(self) -> str:
        """The relationship's MetadataId."""
        return metadata_id("relationship", self.schema_name)

    def to_json(self) -> dict[str, Any]:
        """The relationship as ``RelationshipDefinitions`` answers it."""
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "MetadataId": self.metadata_id,
            "SchemaName": self.schema_name,
            "RelationshipType": "OneToManyRelationship",
            "ReferencedEntity": self.referenced_entity,
            "ReferencedAttribute": self.referenced_attribute,
            "ReferencingEntity": self.referencing_entity,
            "ReferencingAttribute": self.referencing_attribute,
            "ReferencingEntityNavigationPropertyName": self.navigation_property,
            "ReferencedEntityNavigationPropertyName": self.schema_name,
            "IsCustomRelationship": True,
            "CascadeConfiguration": dict(self.cascade),
        }


class TableType(StrEnum):
    """Standard (SQL) or elastic (Cosmos DB) table."""

    STANDARD = "Standard"
    ELASTIC = "Elastic"


@dataclass
class Entity:
    """One table: its names, key, type and columns."""

    logical_name: str
    schema_name: str
    entity_set: str
    primary_id: str
    primary_name: str | None
    table_type: TableType
    object_type_code: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    change_tracking: bool = False

    @property
    def elastic(self) -> bool:
        """Whether the table is elastic (partition ids, read lag, no multi-row $expand)."""
        return self.table_type is TableType.ELASTIC

    @property
    def metadata_id(self) -> str:
        """The table's MetadataId."""
        return metadata_id("entity", self.logical_name)

    def add(self, attribute: Attribute) -> Attribute:
        """Add a column (the store adds the SQLite column separately)."""
        self.attributes[attribute.logical_name] = attribute
        return attribute

    def to_json(self) -> dict[str, Any]:
        """The table as ``EntityDefinitions`` answers it (before ``$select``)."""
        return {
            "MetadataId": self.metadata_id,
            "LogicalName": self.logical_name,
            "SchemaName": self.schema_name,
            "EntitySetName": self.entity_set,
            "LogicalCollectionName": self.entity_set,
            "PrimaryIdAttribute": self.primary_id,
            "PrimaryNameAttribute": self.primary_name,
            "ObjectTypeCode": self.object_type_code,
            "TableType": self.table_type.value,
            "ChangeTrackingEnabled": self.change_tracking,
            "IsCustomEntity": self.logical_name.startswith("msdynci_"),
            "DisplayName": label(self.schema_name),
            "Privileges": privileges_json(self.schema_name),
        }


ENTITY_PROPERTIES: dict[str, EdmType | None] = {
    "MetadataId": EdmType.GUID,
    "LogicalName": EdmType.STRING,
    "SchemaName": EdmType.STRING,
    "EntitySetName": EdmType.STRING,
    "LogicalCollectionName": EdmType.STRING,
    "PrimaryIdAttribute": EdmType.STRING,
    "PrimaryNameAttribute": EdmType.STRING,
    "ObjectTypeCode": EdmType.INT32,
    "TableType": EdmType.STRING,
    "ChangeTrackingEnabled": EdmType.BOOLEAN,
    "IsCustomEntity": EdmType.BOOLEAN,
    "DisplayName": None,
    "Privileges": None,
}
"""The properties of ``EntityMetadata`` the emulator answers, with their type (``None``: complex)."""

ATTRIBUTE_PROPERTIES: dict[str, EdmType | None] = {
    "MetadataId": EdmType.GUID,
    "LogicalName": EdmType.STRING,
    "SchemaName": EdmType.STRING,
    "EntityLogicalName": EdmType.STRING,
    "AttributeType": EdmType.STRING,
    "AttributeTypeName": None,
    "IsPrimaryId": EdmType.BOOLEAN,
    "IsCustomAttribute": EdmType.BOOLEAN,
    "IsValidForRead": EdmType.BOOLEAN,
    "IsValidForUpdate": EdmType.BOOLEAN,
    "DisplayName": None,
}
"""The properties of the base type ``AttributeMetadata``; derived ones (a lookup's ``Targets``) are not
among them, as OData only lets a query name them through a type cast."""

RELATIONSHIP_PROPERTIES: dict[str, EdmType | None] = {
    "MetadataId": EdmType.GUID,
    "SchemaName": EdmType.STRING,
    "RelationshipType": EdmType.STRING,
    "ReferencedEntity": EdmType.STRING,
    "ReferencedAttribute": EdmType.STRING,
    "ReferencingEntity": EdmType.STRING,
    "ReferencingAttribute": EdmType.STRING,
    "ReferencingEntityNavigationPropertyName": EdmType.STRING,
    "ReferencedEntityNavigationPropertyName": EdmType.STRING,
    "IsCustomRelationship": EdmType.BOOLEAN,
    "CascadeConfiguration": None,
}
"""The properties of ``OneToManyRelationshipMetadata``, the type of a table's relationship collections."""


def label(text: str) -> dict[str, Any]:
    """A Dataverse ``Label`` object with one English (1033) localized label."""
    localized = {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [localized],
        "UserLocalizedLabel": localized,
    }


def attribute_json(entity: Entity, attribute: Attribute) -> dict[str, Any]:
    """A column as ``EntityDefinitions(...)/Attributes(...)`` answers it."""
    body: dict[str, Any] = {
        "@odata.type": attribute.type.metadata_type,
        "MetadataId": metadata_id("attribute", entity.logical_name, attribute.logical_name),
        "LogicalName": attribute.logical_name,
        "SchemaName": attribute.schema_name,
        "EntityLogicalName": entity.logical_name,
        "AttributeType": attribute.type.value,
        "AttributeTypeName": {"Value": f"{attribute.type.value}Type"},
        "IsPrimaryId": attribute.logical_name == entity.primary_id,
        "IsCustomAttribute": attribute.logical_name.startswith("msdynci_") or "_" in attribute.logical_name,
        "IsValidForRead": True,
        "IsValidForUpdate": not attribute.read_only,
        "DisplayName": label(attribute.display_name or attribute.schema_name),
    }
    if attribute.type is AttributeType.LOOKUP:
        body["Targets"] = list(attribute.targets)
    return body


def add_common_columns(entity: Entity) -> None:
    """Columns every table has."""
    entity.add(Attribute(entity.primary_id, entity.primary_id, AttributeType.UNIQUEIDENTIFIER))
    entity.add(Attribute("createdon", "CreatedOn", AttributeType.DATETIME, "Created On", read_only=True))
    entity.add(Attribute("modifiedon", "ModifiedOn", AttributeType.DATETIME, "Modified On", read_only=True))
    entity.add(Attribute("versionnumber", "VersionNumber", AttributeType.BIGINT, read_only=True))
    entity.add(Attribute("statecode", "StateCode", AttributeType.STATE, "Status"))


def add_string_columns(entity: Entity, *names: str) -> None:
    """Add text columns (``Edm.String``)."""
    for name in names:
        entity.add(Attribute(name, name, AttributeType.STRING))


def builtin_entities() -> list[Entity]:
    """The four tables the product touches, plus ``sdkmessagefilter`` for capability queries."""
    return [*_source_tables(), *_unification_tables(), _message_filters()]


def _source_tables() -> list[Entity]:
    """``contact`` and ``lead``: the rows the product stamps."""
    contact = Entity("contact", "Contact", "contacts", "contactid", "fullname", TableType.STANDARD, 2)
    add_common_columns(contact)
    add_string_columns(contact, "fullname", "firstname", "lastname", "emailaddress1")
    contact.change_tracking = True

    lead = Entity("lead", "Lead", "leads", "leadid", "fullname", TableType.STANDARD, 4)
    add_common_columns(lead)
    add_string_columns(lead, "fullname", "firstname", "lastname", "emailaddress1", "companyname")
    return [contact, lead]


def _unification_tables() -> list[Entity]:
    """CI-D's elastic tables: the unified profiles and the mapping of source rows to them."""
    profile = Entity(
        "msdynci_customerprofile",
        "msdynci_customerprofile",
        "msdynci_customerprofiles",
        "msdynci_customerprofileid",
        "msdynci_customerid",
        TableType.ELASTIC,
        10_801,
    )
    add_common_columns(profile)
    add_string_columns(profile, "msdynci_customerid", "partitionid", "msdynci_fullname")

    mapping = Entity(
        "msdynci_alternatekey",
        "msdynci_alternatekey",
        "msdynci_alternatekeys",
        "msdynci_alternatekeyid",
        "msdynci_identifier",
        TableType.ELASTIC,
        10_802,
    )
    add_common_columns(mapping)
    add_string_columns(
        mapping,
        "msdynci_datasourcename",
        "msdynci_entityname",
        "msdynci_alternatevalue",
        "msdynci_customerid",
        "msdynci_identifier",
        "partitionid",
    )
    mapping.add(Attribute("msdynci_keyring", "msdynci_keyring", AttributeType.MEMO))
    return [profile, mapping]


def _message_filters() -> Entity:
    """``sdkmessagefilter``: which tables support which messages."""
    filters = Entity(
        "sdkmessagefilter",
        "SdkMessageFilter",
        "sdkmessagefilters",
        "sdkmessagefilterid",
        None,
        TableType.STANDARD,
        4607,
    )
    add_common_columns(filters)
    add_string_columns(filters, "primaryobjecttypecode", "sdkmessagename")
    return filters


MAPPING_RELATIONSHIP = Relationship(
    schema_name="msdynci_customerprofile_msdynci_alternatekey",
    referenced_entity="msdynci_customerprofile",
    referenced_attribute="msdynci_customerprofileid",
    referencing_entity="msdynci_alternatekey",
    referencing_attribute="msdynci_lookupfield_customer",
    navigation_property="msdynci_lookupfield_customer",
    cascade={k: "NoCascade" for k in ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")},
)

QUERY_PATHS = {
    "sdkmessagefilter": {"sdkmessageid/name": "sdkmessagename"},
    "sdkmessageprocessingstep": {
        "sdkmessageid/name": "sdkmessagename",
        "sdkmessagefilterid/primaryobjecttypecode": "primaryobjecttypecode",
    },
}
"""Navigation paths a table accepts in ``$filter``, mapped to the stored column that answers them."""
