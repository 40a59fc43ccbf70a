"""What the hydration needs to know about tables, and the lookup column it writes: find it or create it.

The lookup to the customer profile table is, by default, the one CI-D itself uses. When it exists it is
reused exactly as found and never altered: its navigation property (case-sensitive in ``@odata.bind``)
is read from metadata, never derived from the configured name. Creating it needs customization rights an
unattended identity should not hold, so creation is normally the admin-run ``provision`` step; the
worker creates it only where configuration allows, and otherwise fails with ``LookupMissingError``.

New metadata is not visible to everyone at once: after creating the lookup this module reads it back
with ``Consistency: Strong`` until it exists, then with a normal read until it is visible to every
reader (and usable in binds), within a time budget. A concurrent creator is not an error: the one that
loses the race reuses what the other made.

Every name is validated before it reaches a URL, and string literals go through ``odata.string``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from hydration.clock import Clock
from hydration.log_context import context_logger

from . import odata
from .client import DataverseClient
from .errors import AuthError, FatalError, NotFoundError, RequestError, RetriableError

PROFILE_TABLE = "msdynci_customerprofile"
ALREADY_EXISTS = "0x80047013"
"""The error code of a create whose schema name (relationship or column) is already used."""
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")
_SAFE = ",'()=/"
"""Characters left as they are in query option values, so URLs stay readable in logs and traces."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
"""Entity set names, navigation properties and solution unique names: letters, digits, underscores."""
_TABLE_SELECT = "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled,TableType"
_RELATIONSHIP_SELECT = (
    "SchemaName,ReferencingAttribute,ReferencingEntityNavigationPropertyName,ReferencedEntity"
)

log = context_logger(__name__)


@dataclass(frozen=True)
class TableInfo:
    """The facts about a table the hydration relies on, as its metadata states them."""

    logical_name: str
    entity_set: str
    primary_id: str
    table_type: str
    """``Standard`` or ``Elastic``."""
    change_tracking: bool

    @property
    def elastic(self) -> bool:
        """Whether rows live in an elastic table (partition ids, read lag, no multi-row ``$expand``)."""
        return self.table_type.lower() == "elastic"


@dataclass(frozen=True)
class LookupSpec:
    """The lookup column to use or create; names, display name and solution are configuration.

    Names are checked here, at construction, so a bad setting fails before any request is made.
    """

    schema_name: str = "msdynci_lookupfield_customerprofile"
    """The lookup's schema name; its logical name is this lowercased (CI-D's own by default)."""
    relationship_name: str = "msdynci_customerprofile_{table}"
    """The relationship's schema name; ``{table}`` stands for the referencing table's logical name."""
    display_name: str = "Customer Profile"
    solution: str | None = None
    """The unique name of the solution a created lookup goes into (``MSCRM.SolutionUniqueName``)."""

    def __post_init__(self) -> None:
        odata.schema_name(self.schema_name)
        odata.logical_name(self.schema_name.lower() + "pid")
        self.relationship("contact")
        if not isinstance(self.display_name, str) or not self.display_name.strip():
            raise odata.InvalidNameError("the lookup's display name must not be empty")
        if self.solution is not None and not _IDENTIFIER.match(self.solution):
            raise odata.InvalidNameError(f"{self.solution!r} is not a valid solution unique name")

    @property
    def attribute(self) -> str:
        """The lookup's logical name."""
        return self.schema_name.lower()

    def relationship(self, table: str) -> str:
        """The relationship's schema name for a referencing table (validated)."""
        return odata.schema_name(self.relationship_name.replace("{table}", odata.logical_name(table)))


@dataclass(frozen=True)
class LookupInfo:
    """A lookup to the profile table as it exists on a table, ready for reads and binds."""

    table: str
    attribute: str
    """The logical name, read as ``_<attribute>_value``."""
    navigation_property: str
    """As metadata spells it (``ReferencingEntityNavigationPropertyName``): binds are case-sensitive."""
    relationship: str
    partition_column: str | None
    """``<attribute>pid`` when the table has it (a lookup to an elastic table carries its partition id)."""
    created: bool
    """Whether this call created the lookup (a full pass is owed)."""


class LookupMissingError(FatalError):
    """The table has no lookup to the profile table and this worker may not create it."""


class LookupNotVisibleError(RetriableError):
    """The lookup exists (or was just created) but is not yet visible to every reader; try again later."""

    def __init__(self, message: str, *, created: bool) -> None:
        super().__init__(message)
        self.created = created


def _query(path: str, options: Mapping[str, str]) -> str:
    """``path?options`` with values percent-encoded (spaces as ``%20``, never ``+``)."""
    return path + "?" + "&".join(f"{name}={quote(value, safe=_SAFE)}" for name, value in options.items())


def _text(record: Mapping[str, Any], name: str, what: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise FatalError(f"the metadata of {what} has no {name}")
    return value


def backoff(waited: float) -> float:
    """The next pause while waiting for metadata, from the time waited so far: 1, 1, 2, 4 ... 30 s.

    Doubling the total wait keeps the number of reads small (about log2 of the delay) while the first
    checks come quickly, as most new metadata spreads within seconds.
    """
    return min(max(1.0, waited), 30.0)


class Metadata:
    """Reads (and, when allowed, creates) the metadata one organization's hydration needs.

    Answers about tables, lookups and UpdateMultiple support are cached for the object's lifetime:
    they change only by an administrator's hand, and a task should not pay for them on every page.
    A race between threads costs at most a repeated read.
    """

    def __init__(
        self,
        client: DataverseClient,
        *,
        clock: Clock | None = None,
        visibility_timeout: float = 300.0,
    ) -> None:
        self._client = client
        self._clock = clock or client.clock
        self._visibility_timeout = visibility_timeout
        self._tables: dict[str, TableInfo] = {}
        self._lookups: dict[tuple[str, LookupSpec], LookupInfo] = {}
        self._update_multiple: dict[str, bool] = {}

    # -- tables ---------------------------------------------------------------------------------

    def table(self, logical_name: str) -> TableInfo:
        """A table's names, key, type and change tracking; ``NotFoundError`` if it does not exist."""
        name = odata.logical_name(logical_name)
        cached = self._tables.get(name)
        if cached is not None:
            return cached
        path = _query(f"EntityDefinitions(LogicalName={odata.string(name)})", {"$select": _TABLE_SELECT})
        try:
            record = self._client.get_json(path, kind="metadata")
        except NotFoundError as exc:
            raise NotFoundError(
                f"the table {name!r} does not exist in the organization (check the logical name)",
                status=exc.status,
                code=exc.code,
            ) from exc
        what = f"table {name}"
        if not isinstance(record, dict):
            raise FatalError(f"the metadata of {what} is not a JSON object")
        entity_set = _text(record, "EntitySetName", what)
        if not _IDENTIFIER.match(entity_set):
            raise FatalError(f"the entity set name of {what} is not a valid name")
        info = TableInfo(
            logical_name=name,
            entity_set=entity_set,
            primary_id=odata.logical_name(_text(record, "PrimaryIdAttribute", what)),
            table_type=str(record.get("TableType") or "Standard"),
            change_tracking=record.get("ChangeTrackingEnabled") is True,
        )
        self._tables[name] = info
        return info

    def supports_update_multiple(self, table: str) -> bool:
        """Whether ``UpdateMultiple`` may be used on a table (listed among the table's messages)."""
        name = odata.logical_name(table)
        cached = self._update_multiple.get(name)
        if cached is not None:
            return cached
        condition = f"sdkmessageid/name eq {odata.string('UpdateMultiple')} and primaryobjecttypecode eq "
        options = {"$select": "sdkmessagefilterid", "$filter": condition + odata.string(name)}
        payload = self._client.get_json(_query("sdkmessagefilters", options), kind="metadata")
        rows = payload.get("value") if isinstance(payload, dict) else None
        supported = isinstance(rows, list) and len(rows) > 0
        self._update_multiple[name] = supported
        return supported

    # -- the lookup -----------------------------------------------------------------------------

    def find_lookup(self, table: str, spec: LookupSpec) -> LookupInfo | None:
        """The lookup ``spec`` names on ``table`` if it exists and is visible; ``None`` if it does not exist.

        A column of that name that is not a lookup to the profile table is a ``FatalError``: it must not
        be reused, and creating the lookup would fail.
        """
        return self._find(table, spec, strong=False)

    def ensure_lookup(self, table: str, spec: LookupSpec, *, allow_create: bool) -> LookupInfo:
        """The lookup on ``table``: reused if it exists, else created if allowed, else LookupMissingError."""
        name = odata.logical_name(table)
        cached = self._lookups.get((name, spec))
        if cached is not None:
            return replace(cached, created=False)
        info = self.find_lookup(name, spec)
        if info is None and self._find(name, spec, strong=True) is not None:
            info = self._await_visible(name, spec, created=False)  # made moments ago, not yet visible to all
        if info is not None:
            log.info("reusing lookup %s on %s (relationship %s)", info.attribute, name, info.relationship)
        elif not allow_create:
            raise LookupMissingError(
                f"the table {name!r} has no lookup column {spec.attribute!r} to {PROFILE_TABLE}, and this "
                "worker is not allowed to create it: run `python -m hydration provision` as a Dataverse "
                "administrator (System Customizer), or allow lookup creation in the configuration"
            )
        else:
            info = self._create(name, spec)
        self._lookups[(name, spec)] = info
        return info

    def _find(self, table: str, spec: LookupSpec, *, strong: bool) -> LookupInfo | None:
        self.table(table)  # a clear NotFoundError for an unknown table
        path = _query(
            f"EntityDefinitions(LogicalName={odata.string(table)})/ManyToOneRelationships",
            {
                "$select": _RELATIONSHIP_SELECT,
                "$filter": f"ReferencedEntity eq {odata.string(PROFILE_TABLE)}",
            },
        )
        payload = self._get(path, strong=strong)
        records = payload.get("value") if isinstance(payload, dict) else None
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and record.get("ReferencingAttribute") == spec.attribute:
                return self._lookup(table, spec, record, strong=strong)
        attribute = self._attribute(table, spec.attribute, strong=strong)
        if attribute is None:
            return None
        kind = attribute.get("AttributeType", "unknown")
        raise FatalError(
            f"the table {table!r} already has a column {spec.attribute!r} ({kind}) that is not a lookup to "
            f"{PROFILE_TABLE}; it cannot be used or replaced: configure another lookup schema name"
        )

    def _lookup(self, table: str, spec: LookupSpec, record: Mapping[str, Any], *, strong: bool) -> LookupInfo:
        what = f"the lookup {spec.attribute} on {table}"
        navigation = _text(record, "ReferencingEntityNavigationPropertyName", what)
        if not _IDENTIFIER.match(navigation):
            raise FatalError(f"the navigation property of {what} is not a valid name")
        pid = spec.attribute + "pid"
        return LookupInfo(
            table=table,
            attribute=spec.attribute,
            navigation_property=navigation,
            relationship=_text(record, "SchemaName", what),
            partition_column=pid if self._attribute(table, pid, strong=strong) is not None else None,
            created=False,
        )

    def _get(self, path: str, *, strong: bool) -> Any:
        """A metadata read; ``strong`` bypasses the metadata cache to see changes made moments ago."""
        if strong:
            return self._client.get_json(path, kind="metadata", Consistency="Strong")
        return self._client.get_json(path, kind="metadata")

    def _attribute(self, table: str, attribute: str, *, strong: bool) -> dict[str, Any] | None:
        path = _query(
            f"EntityDefinitions(LogicalName={odata.string(table)})"
            f"/Attributes(LogicalName={odata.string(odata.logical_name(attribute))})",
            {"$select": "LogicalName,AttributeType"},
        )
        try:
            record = self._get(path, strong=strong)
        except NotFoundError:
            return None
        return record if isinstance(record, dict) else {}

    def _create(self, table: str, spec: LookupSpec) -> LookupInfo:
        profile = self.table(PROFILE_TABLE)
        relationship = spec.relationship(table)
        headers = {"MSCRM.SolutionUniqueName": spec.solution} if spec.solution else {}
        body = _relationship_body(table, profile.primary_id, relationship, spec)
        created = True
        try:
            self._client.request(
                "POST", "RelationshipDefinitions", kind="create_relationship", json_body=body, headers=headers
            )
        except AuthError as exc:
            raise AuthError(
                f"creating the lookup {spec.attribute!r} on {table!r} needs customization privileges "
                "(System Customizer or System Administrator): run `python -m hydration provision` as an "
                f"administrator. {exc.message}",
                status=exc.status,
                code=exc.code,
            ) from exc
        except RequestError as exc:
            if exc.code != ALREADY_EXISTS:
                raise
            if self._find(table, spec, strong=True) is None:
                raise FatalError(
                    f"creating the lookup {spec.attribute!r} on {table!r} failed because the relationship "
                    f"{relationship!r} or the column already exists, but it is not that lookup: configure "
                    f"another relationship name. {exc.message}",
                    status=exc.status,
                    code=exc.code,
                ) from exc
            created = False  # a concurrent creator won the race; use what it made
            log.info("lookup %s on %s was created concurrently; reusing it", spec.attribute, table)
        info = self._await_visible(table, spec, created=created)
        if created:
            log.info("created lookup %s on %s (relationship %s)", info.attribute, table, info.relationship)
        return info

    def _await_visible(self, table: str, spec: LookupSpec, *, created: bool) -> LookupInfo:
        """Wait until the lookup exists (strong read), then until every reader sees it (normal read)."""
        waited = self._poll(table, spec, strong=True, waited=0.0, created=created)[1]
        info = self._poll(table, spec, strong=False, waited=waited, created=created)[0]
        return replace(info, created=created)

    def _poll(
        self, table: str, spec: LookupSpec, *, strong: bool, waited: float, created: bool
    ) -> tuple[LookupInfo, float]:
        """Read until the lookup is found, sleeping with backoff; return it and the total time waited."""
        while (info := self._find(table, spec, strong=strong)) is None:
            if waited >= self._visibility_timeout:
                raise LookupNotVisibleError(
                    f"the lookup {spec.attribute!r} on {table!r} is not yet visible after {waited:.0f}s "
                    "(new metadata takes a while to spread); the next attempt will find it",
                    created=created,
                )
            pause = min(backoff(waited), self._visibility_timeout - waited)
            self._clock.sleep(pause)
            waited += pause
        return info, waited


def _relationship_body(
    table: str, referenced_attribute: str, relationship: str, spec: LookupSpec
) -> dict[str, Any]:
    """The ``POST RelationshipDefinitions`` body: a lookup from ``table`` to the (elastic) profile table."""
    localized = {
        "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
        "Label": spec.display_name,
        "LanguageCode": 1033,
    }
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": relationship,
        "ReferencedEntity": PROFILE_TABLE,
        "ReferencedAttribute": referenced_attribute,
        "ReferencingEntity": table,
        "CascadeConfiguration": dict.fromkeys(CASCADES, "NoCascade"),
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": spec.schema_name,
            "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [localized]},
            "RequiredLevel": {"Value": "None"},
        },
    }


def provision(metadata: Metadata, tables: Sequence[str], spec: LookupSpec) -> list[LookupInfo]:
    """The admin step: make sure every table has the lookup, creating it where missing.

    All names are checked first, so a typo in the last table does not leave the first ones half done.
    """
    names = [odata.logical_name(table) for table in tables]
    return [metadata.ensure_lookup(name, spec, allow_create=True) for name in names]
