"""The organization's metadata: tables by name and entity set, relationships, and creating a lookup.

``create_relationship`` validates a ``POST RelationshipDefinitions`` body the way Dataverse does for
the fields the product sends, and new items stay invisible for the metadata delay unless the reader
asks for ``Consistency: Strong``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .errors import METADATA_EXISTS, ApiError, bad_request
from .event_tables import event_entities
from .schema import Attribute, AttributeType, Entity, Relationship, builtin_entities

RELATIONSHIP_TYPE = "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
LOOKUP_TYPE = "Microsoft.Dynamics.CRM.LookupAttributeMetadata"
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")
OPTIONAL_CASCADES = ("Archive", "RollupView")
"""Cascade properties newer API versions also know; accepted, never required."""
CASCADE_VALUES = ("NoCascade", "Cascade", "Active", "UserOwned", "RemoveLink", "Restrict")
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+$")
_INVALID_DEFINITION = "0x80044363"


def _odata_type(value: object) -> str:
    return value.lstrip("#") if isinstance(value, str) else ""


def _schema_name(name: object) -> str:
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise bad_request(
            f"'{name}' is not a valid schema name: it needs a publisher prefix and only letters, "
            "digits and underscores.",
            _INVALID_DEFINITION,
        )
    return name


class Catalog:
    """Every table and relationship of the emulated organization."""

    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {
            e.logical_name: e for e in (*builtin_entities(), *event_entities())
        }
        self.relationships: dict[str, Relationship] = {}
        self._lock = threading.Lock()

    def entity(self, logical_name: str) -> Entity | None:
        """A table by logical name (case-sensitive, as logical names are lowercase)."""
        return self.entities.get(logical_name)

    def by_set(self, entity_set: str) -> Entity | None:
        """A table by entity set name (case-sensitive, as the Web API's URL segments are)."""
        for entity in self.entities.values():
            if entity.entity_set == entity_set:
                return entity
        return None

    def relationship(self, schema_name: str, now: int, strong: bool) -> Relationship | None:
        """A relationship by schema name (case-insensitive, as metadata names are), if visible."""
        for rel in self.relationships.values():
            if rel.schema_name.lower() == schema_name.lower() and (strong or rel.visible_at <= now):
                return rel
        return None

    def attribute(self, entity: Entity, logical_name: str, now: int, strong: bool) -> Attribute | None:
        """A column by logical name, if visible."""
        attribute = entity.attributes.get(logical_name.lower())
        if attribute is None or not (strong or attribute.visible_at <= now):
            return None
        return attribute

    def lookups_to(self, entity: Entity, now: int, strong: bool) -> list[Relationship]:
        """The visible many-to-one relationships of a table."""
        return [
            r
            for r in self.relationships.values()
            if r.referencing_entity == entity.logical_name and (strong or r.visible_at <= now)
        ]

    def navigation(self, entity: Entity, name: str, now: int) -> Relationship | None:
        """The relationship whose navigation property is exactly ``name`` (case-sensitive)."""
        for rel in self.lookups_to(entity, now, strong=False):
            if rel.navigation_property == name:
                return rel
        return None

    def add_relationship(self, rel: Relationship, *, display_name: str, visible_at: int) -> list[Attribute]:
        """Register a relationship and its lookup (and partition id companion).

        The body was validated earlier, but the names are checked again here, under the lock, so two
        concurrent creations of the same lookup leave one relationship and one refusal, never a half-made
        second one.
        """
        with self._lock:
            referencing = self.entities[rel.referencing_entity]
            referenced = self.entities[rel.referenced_entity]
            self._check_free(rel.schema_name, rel.navigation_property, referencing, referenced)
            return self._register(rel, referencing, referenced, display_name, visible_at)

    def _register(
        self, rel: Relationship, referencing: Entity, referenced: Entity, display_name: str, visible_at: int
    ) -> list[Attribute]:
        rel.visible_at = visible_at
        self.relationships[rel.schema_name] = rel
        added = [
            referencing.add(
                Attribute(
                    rel.referencing_attribute,
                    rel.navigation_property,
                    AttributeType.LOOKUP,
                    display_name,
                    targets=(referenced.logical_name,),
                    visible_at=visible_at,
                )
            )
        ]
        if referenced.elastic:
            pid = f"{rel.referencing_attribute}pid"
            added.append(referencing.add(Attribute(pid, pid, AttributeType.STRING, visible_at=visible_at)))
        return added

    def validate_relationship(self, body: Any) -> tuple[Relationship, str]:
        """Check a ``POST RelationshipDefinitions`` body; return the relationship and display name."""
        _check_relationship_fields(body)
        lookup = body["Lookup"]
        schema_name = _schema_name(body["SchemaName"])
        lookup_name = _schema_name(lookup["SchemaName"])
        referenced = self.entity(str(body["ReferencedEntity"]))
        referencing = self.entity(str(body["ReferencingEntity"]))
        if referenced is None or referencing is None:
            missing = body["ReferencedEntity"] if referenced is None else body["ReferencingEntity"]
            raise ApiError(404, "0x80040217", f"Could not find entity with name '{missing}'.")
        if body["ReferencedAttribute"] != referenced.primary_id:
            raise bad_request(
                f"ReferencedAttribute must be the primary key '{referenced.primary_id}' of "
                f"'{referenced.logical_name}'.",
                _INVALID_DEFINITION,
            )
        self._check_cascade(body.get("CascadeConfiguration"), referenced)
        self._check_free(schema_name, lookup_name, referencing, referenced)
        logical = lookup_name.lower()
        rel = Relationship(
            schema_name=schema_name,
            referenced_entity=referenced.logical_name,
            referenced_attribute=referenced.primary_id,
            referencing_entity=referencing.logical_name,
            referencing_attribute=logical,
            navigation_property=lookup_name,
            cascade={k: "NoCascade" for k in CASCADES} | dict(body.get("CascadeConfiguration") or {}),
        )
        return rel, _display_label(lookup, lookup_name)

    def _check_free(
        self, schema_name: str, lookup_name: str, referencing: Entity, referenced: Entity
    ) -> None:
        """Refuse names already taken.

        A relationship name is unique in the organization; a lookup name (and, toward an elastic table,
        its partition id companion) is unique on the referencing table.
        """
        if any(r.schema_name.lower() == schema_name.lower() for r in self.relationships.values()):
            raise bad_request(f"A relationship with the name {schema_name} already exists.", METADATA_EXISTS)
        logical = lookup_name.lower()
        taken = logical in referencing.attributes or (
            referenced.elastic and f"{logical}pid" in referencing.attributes
        )
        if taken:
            raise bad_request(
                f"An attribute with the name {lookup_name} already exists on {referencing.logical_name}.",
                METADATA_EXISTS,
            )

    @staticmethod
    def _check_cascade(cascade: Any, referenced: Entity) -> None:
        if cascade is None:
            cascade = {}
        if not isinstance(cascade, dict):
            raise bad_request("'CascadeConfiguration' must be an object.", _INVALID_DEFINITION)
        for name, value in cascade.items():
            if name not in CASCADES + OPTIONAL_CASCADES or value not in CASCADE_VALUES:
                raise bad_request(f"Invalid cascade configuration '{name}': '{value}'.", _INVALID_DEFINITION)
        if referenced.elastic:
            for name in CASCADES + tuple(n for n in OPTIONAL_CASCADES if n in cascade):
                if cascade.get(name) != "NoCascade":
                    raise bad_request(
                        f"Cascade configuration '{name}' must be 'NoCascade' for a relationship with the "
                        f"elastic table '{referenced.logical_name}'.",
                        _INVALID_DEFINITION,
                    )


def _check_relationship_fields(body: Any) -> None:
    """Refuse a ``RelationshipDefinitions`` body without the shape and fields of a one-to-many lookup."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if _odata_type(body.get("@odata.type")) != RELATIONSHIP_TYPE:
        raise bad_request(
            f"The '@odata.type' of a relationship definition must be '{RELATIONSHIP_TYPE}'.",
            _INVALID_DEFINITION,
        )
    for name in ("SchemaName", "ReferencedEntity", "ReferencedAttribute", "ReferencingEntity", "Lookup"):
        if not body.get(name):
            raise bad_request(f"The required field '{name}' is missing.", _INVALID_DEFINITION)
    lookup = body["Lookup"]
    if not isinstance(lookup, dict) or _odata_type(lookup.get("@odata.type")) != LOOKUP_TYPE:
        raise bad_request(f"'Lookup' must be a '{LOOKUP_TYPE}'.", _INVALID_DEFINITION)
    if lookup.get("AttributeType", "Lookup") != "Lookup":
        raise bad_request(
            f"The AttributeType of 'Lookup' must be 'Lookup', not '{lookup['AttributeType']}'.",
            _INVALID_DEFINITION,
        )
    if not lookup.get("SchemaName"):
        raise bad_request("The required field 'Lookup.SchemaName' is missing.", _INVALID_DEFINITION)


def _display_label(lookup: dict[str, Any], default: str) -> str:
    """The lookup's first localized display label, or ``default`` when it has none."""
    display = lookup.get("DisplayName")
    if isinstance(display, dict):
        labels = display.get("LocalizedLabels") or []
        if labels and isinstance(labels[0], dict) and isinstance(labels[0].get("Label"), str):
            return str(labels[0]["Label"])
    return default
