"""The rows unification output is made of: its data sources, columns and row factories.

One seeded random generator makes every GUID, name and stamp, so a seed decides the data.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..organization import CID_USER, Organization
from ..store import WRITER, quote
from ..values import store_datetime

CRM_USER = "crm-user"
"""The user seeded and newly created source rows are written as."""
DAY = 86_400_000_000
Record = Mapping[str, Any] | sqlite3.Row
"""A profile as the generator passes it around: a row it made, or one read back from SQLite."""
_FIRST = [
    "Ana",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nia",
]
_LAST = [
    "Alvarez",
    "Brown",
    "Cohen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Khan",
]


@dataclass(frozen=True)
class DataSource:
    """One CI-D data source table: its names in the mapping and the Dataverse table it came from."""

    datasource: str
    entity: str
    table: str | None
    dataverse: bool


SOURCES = (
    DataSource("DataverseSales", "contact", "contact", True),
    DataSource("DataverseSales", "lead", "lead", True),
    DataSource("DataverseMarketing", "contact", "contact", True),
    DataSource("LoyaltyPlatform", "Members", None, False),
)
SALES_CONTACT, SALES_LEAD, MARKETING_CONTACT, LOYALTY = SOURCES
MAPPING_COLUMNS = (
    "msdynci_alternatekeyid",
    "msdynci_datasourcename",
    "msdynci_entityname",
    "msdynci_alternatevalue",
    "msdynci_customerid",
    "msdynci_identifier",
    "msdynci_keyring",
    "msdynci_lookupfield_customer",
    "msdynci_lookupfield_customerpid",
    "createdon",
    "modifiedon",
    "statecode",
)
PROFILE_COLUMNS = (
    "msdynci_customerprofileid",
    "msdynci_customerid",
    "msdynci_fullname",
    "partitionid",
    "createdon",
    "modifiedon",
    "statecode",
)
SOURCE_COLUMNS = (
    "fullname",
    "firstname",
    "lastname",
    "emailaddress1",
    "createdon",
    "modifiedon",
    "statecode",
)


_GUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_GUID_SET = (0x8000 << 48) | (4 << 76)


def _guid(bits: int) -> str:
    """``values.new_guid``, without building a ``uuid.UUID``: the same text, four times as fast.

    Seeding a million contacts formats a few million GUIDs, and ``uuid.UUID`` was a tenth of the time.
    The version-4 and variant bits are set as ``uuid.UUID(int=bits, version=4)`` sets them.
    """
    h = f"{(bits & _GUID_CLEAR) | _GUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _keyring(source: DataSource, value: str) -> str:
    """``json.dumps`` of the one-entry keyring CI-D writes, with only the value encoded per row."""
    return (
        f'[{{"DataSourceName": {json.dumps(source.datasource)}, "EntityName": {json.dumps(source.entity)}, '
        f'"PreferredKey": {json.dumps(value)}}}]'
    )


class _Maker:
    """Row factories sharing one seeded random generator."""

    def __init__(self, org: Organization, rng: random.Random, *, fresh: bool = False) -> None:
        self.org = org
        self.rng = rng
        self.precision = org.modes.precision
        self.fresh = fresh

    def guid(self, table: str | None = None) -> str:
        """A new GUID; with ``fresh``, drawn again while ``table`` already has a row with it.

        Re-unification's generator is seeded by its own ``seed``, and the same seed as the scene's (both
        default to 1) gives the same stream of bits: its new contacts would reuse seeded contacts' ids
        and fail the insert. On a clash one 32-bit word is skipped before the next draw: a GUID takes
        four words, so without the skip every next draw would be the next seeded contact's id. A clash
        is the only thing that changes the draws, so every run that did not clash draws as before.
        """
        while True:
            key = _guid(self.rng.getrandbits(128))
            if not (self.fresh and table) or not self.org.store.fetch(
                f"SELECT 1 FROM {quote(table)} WHERE {quote(self.org.entity(table).primary_id)} = ?", (key,)
            ):
                return key
            self.rng.getrandbits(32)

    def stamp(self, micros: int) -> int:
        return store_datetime(micros, self.precision)

    def person(self, key_column: str, key: str, at: int) -> dict[str, Any]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        return {
            key_column: key,
            "fullname": f"{first} {last}",
            "firstname": first,
            "lastname": last,
            "emailaddress1": f"{first}.{last}.{key[:6]}@example.com".lower(),
            "createdon": self.stamp(at),
            "modifiedon": self.stamp(at),
            "statecode": 0,
            WRITER: CRM_USER,
        }

    def profile(self, at: int) -> dict[str, Any]:
        customer_id = f"{self.rng.getrandbits(128):032x}"
        partition = f"cid-{customer_id[:8]}" if self.org.modes.profile_partitions == "custom" else None
        return {
            "msdynci_customerprofileid": self.guid("msdynci_customerprofile"),
            "msdynci_customerid": customer_id,
            "msdynci_fullname": f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}",
            "partitionid": partition,
            "createdon": self.stamp(at),
            "modifiedon": self.stamp(at),
            "statecode": 0,
            WRITER: CID_USER,
        }

    def mapping(self, source: DataSource, value: str, profile: Record, at: int) -> dict[str, Any]:
        return {
            "msdynci_alternatekeyid": self.guid("msdynci_alternatekey"),
            "msdynci_datasourcename": source.datasource,
            "msdynci_entityname": source.entity,
            "msdynci_alternatevalue": value,
            "msdynci_customerid": profile["msdynci_customerid"],
            "msdynci_identifier": f"{source.datasource}|{source.entity}|{value}",
            "msdynci_keyring": _keyring(source, value),
            "msdynci_lookupfield_customer": profile["msdynci_customerprofileid"],
            "msdynci_lookupfield_customerpid": profile["partitionid"],
            "createdon": self.stamp(at),
            "modifiedon": self.stamp(at),
            "statecode": 0,
            WRITER: CID_USER,
        }
