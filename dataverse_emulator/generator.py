"""Deterministic data shaped like Customer Insights - Data's unification output, and re-unification.

``seed_organization`` fills contacts, leads, profiles and mapping rows from a seed: several source rows
merged into one profile, source rows with no mapping, mapping rows whose source row was deleted, two
Dataverse data sources feeding ``contact`` (some naming different profiles: conflicts), a source that is
not Dataverse, a few keys in upper case and a few that are not GUIDs. ``reunify`` changes a fraction of
the mapping as a new unification would: moves, new mapped rows, deleted mapping rows, and profiles
merged away and deleted, each with a new ``modifiedon``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .organization import CID_USER, Organization
from .schema import metadata_id
from .store import VISIBLE_AT, WRITER, quote
from .values import new_guid, store_datetime

CRM_USER = "crm-user"
"""The user seeded and newly created source rows are written as."""
DAY = 86_400_000_000
UNMAPPED_SHARE = 0.05
"""Source rows unification left without a profile."""
MARKETING_SHARE = 0.04
"""Sales contacts that the Marketing data source also names (a second mapping row for one contact)."""
CONFLICT_SHARE = 0.5
"""Of those, the ones whose Marketing row names another profile: the newest ``modifiedon`` wins."""
UPPER_SHARE = 0.01
"""Mapping rows whose GUID value is in upper case."""
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


class _Maker:
    """Row factories sharing one seeded random generator."""

    def __init__(self, org: Organization, rng: random.Random) -> None:
        self.org = org
        self.rng = rng
        self.precision = org.modes.precision

    def guid(self) -> str:
        return new_guid(self.rng.getrandbits(128))

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
            "msdynci_customerprofileid": self.guid(),
            "msdynci_customerid": customer_id,
            "msdynci_fullname": f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}",
            "partitionid": partition,
            "createdon": self.stamp(at),
            "modifiedon": self.stamp(at),
            "statecode": 0,
            WRITER: CID_USER,
        }

    def mapping(self, source: DataSource, value: str, profile: dict[str, Any], at: int) -> dict[str, Any]:
        keyring = [{"DataSourceName": source.datasource, "EntityName": source.entity, "PreferredKey": value}]
        return {
            "msdynci_alternatekeyid": self.guid(),
            "msdynci_datasourcename": source.datasource,
            "msdynci_entityname": source.entity,
            "msdynci_alternatevalue": value,
            "msdynci_customerid": profile["msdynci_customerid"],
            "msdynci_identifier": f"{source.datasource}|{source.entity}|{value}",
            "msdynci_keyring": json.dumps(keyring),
            "msdynci_lookupfield_customer": profile["msdynci_customerprofileid"],
            "msdynci_lookupfield_customerpid": profile["partitionid"],
            "createdon": self.stamp(at),
            "modifiedon": self.stamp(at),
            "statecode": 0,
            WRITER: CID_USER,
        }


def seed_organization(org: Organization) -> dict[str, int]:
    """Rebuild every table and fill it from ``org.seed``; return the row counts.

    One transaction holds it all: SQLite then writes once instead of committing every row.
    """
    with org.store.transaction():
        return _seed(org)


def _seed(org: Organization) -> dict[str, int]:
    org.rebuild()
    rng = random.Random(org.seed.seed)
    make = _Maker(org, rng)
    now = org.clock.now()
    unified_at = now - 2 * DAY
    contacts = [make.guid() for _ in range(org.seed.contacts)]
    leads = [make.guid() for _ in range(org.seed.leads)]
    contact_rows = (make.person("contactid", k, unified_at - rng.randrange(365 * DAY)) for k in contacts)
    lead_rows = (make.person("leadid", k, unified_at - rng.randrange(365 * DAY)) for k in leads)
    org.store.insert_many(org.entity("contact"), contact_rows, ("contactid", *SOURCE_COLUMNS))
    org.store.insert_many(org.entity("lead"), lead_rows, ("leadid", *SOURCE_COLUMNS))

    mapped = [(SALES_CONTACT, k) for k in contacts if rng.random() >= UNMAPPED_SHARE]
    mapped += [(SALES_LEAD, k) for k in leads if rng.random() >= UNMAPPED_SHARE]
    rng.shuffle(mapped)
    profiles: list[dict[str, Any]] = []
    mappings: list[dict[str, Any]] = []

    def unified(offset_limit: int = 600_000_000) -> int:
        return unified_at + rng.randrange(offset_limit)

    index = 0
    while index < len(mapped):
        size = rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
        profile = make.profile(unified())
        profiles.append(profile)
        for source, key in mapped[index : index + size]:
            value = key.upper() if rng.random() < UPPER_SHARE else key
            mappings.append(make.mapping(source, value, profile, unified()))
            if source is SALES_CONTACT and rng.random() < MARKETING_SHARE:
                earlier = profiles[:-1]
                other = rng.choice(earlier) if earlier and rng.random() < CONFLICT_SHARE else profile
                at = mappings[-1]["modifiedon"] + rng.choice((-5, 5)) * 1_000_000
                mappings.append(make.mapping(MARKETING_CONTACT, key, other, at))
        if rng.random() < 0.3:
            mappings.append(make.mapping(LOYALTY, f"LOY-{rng.randrange(10**7):07d}", profile, unified()))
        index += size
    for _ in range(max(1, len(contacts) // 100) if contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, make.guid(), rng.choice(profiles), unified()))
    for n in range(max(1, len(contacts) // 1000) if contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, f"CRM-{n:06d}", rng.choice(profiles), unified()))
    org.store.insert_many(org.entity("msdynci_customerprofile"), profiles, PROFILE_COLUMNS)
    org.store.insert_many(org.entity("msdynci_alternatekey"), mappings, MAPPING_COLUMNS)
    sync_message_filters(org)
    return {
        "contacts": len(contacts),
        "leads": len(leads),
        "profiles": len(profiles),
        "mappings": len(mappings),
    }


def sync_message_filters(org: Organization) -> None:
    """Make ``sdkmessagefilters`` answer which tables support which messages, per the modes."""
    entity = org.entity("sdkmessagefilter")
    rows = []
    for table in ("contact", "lead", "msdynci_customerprofile", "msdynci_alternatekey"):
        messages = ["Create", "Update", "Delete", "Retrieve", "RetrieveMultiple"]
        if org.modes.update_multiple.get(table, False):
            messages += ["CreateMultiple", "UpdateMultiple"]
        for message in messages:
            key = metadata_id("sdkmessagefilter", table, message)
            rows.append(
                {"sdkmessagefilterid": key, "primaryobjecttypecode": table, "sdkmessagename": message}
            )
    with org.store.lock:
        org.store.execute(f"DELETE FROM {quote('sdkmessagefilter')}")
        org.store.insert_many(entity, rows, ("sdkmessagefilterid", "primaryobjecttypecode", "sdkmessagename"))


CHANGES = (
    "moved",
    "mapped_existing",
    "mapped_new",
    "deleted",
    "merged_profiles",
    "merged_rows",
    "new_profiles",
    "deferred_profiles",
)
"""The change counts ``reunify`` answers."""
MOVED_SHARE, NEW_SHARE, DELETED_SHARE = 0.35, 0.25, 0.2
"""How the changed rows split; the rest of the goal is met by merging profiles."""


def reunify(
    org: Organization,
    *,
    fraction: float,
    seed: int,
    defer_profiles: bool = False,
    spread_seconds: float = 0,
    now: int | None = None,
) -> dict[str, int]:
    """Change about ``fraction`` of the Dataverse mapping rows as a new unification would.

    Profiles are merged first, and a merge target is never itself merged away in the same run, so all
    former rows of a merged profile end on one surviving profile. Then contacts that had no mapping row,
    and contacts created now, get one. Last, rows not yet touched are moved to another surviving profile
    or deleted. Every existing mapping row changes at most once, so the counts say exactly what changed.
    Changed rows get a ``modifiedon`` of ``now`` (default: server time), or up to ``spread_seconds``
    before it.
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if spread_seconds < 0:
        raise ValueError("spread_seconds must be >= 0")
    rng = random.Random(seed)
    make = _Maker(org, rng)
    mapping = org.entity("msdynci_alternatekey")
    counts = dict.fromkeys(CHANGES, 0)
    now = org.clock.now() if now is None else now
    lag = org.visible_at(mapping, now)

    spread = int(spread_seconds * 1_000_000)

    def when() -> int:
        return make.stamp(now - int(rng.uniform(0, spread)))

    def relink(key: str, profile: dict[str, Any]) -> None:
        values = {**_link(profile), "modifiedon": when()}
        org.store.update(mapping, key, values, writer=CID_USER, visible_at=lag)

    with org.store.transaction():
        dv = [s.datasource for s in SOURCES if s.dataverse]
        rows = org.store.fetch(
            "SELECT msdynci_alternatekeyid AS id, msdynci_lookupfield_customer AS profile "
            f"FROM {quote(mapping.logical_name)} "
            f"WHERE msdynci_datasourcename IN ({','.join('?' * len(dv))}) ORDER BY msdynci_alternatekeyid",
            dv,
        )
        profiles = {
            r["id"]: dict(r)
            for r in org.store.fetch(
                "SELECT msdynci_customerprofileid AS id, msdynci_customerid AS cid, partitionid AS pid "
                "FROM msdynci_customerprofile ORDER BY msdynci_customerprofileid"
            )
        }
        if not rows or len(profiles) < 2:
            return counts
        total = max(1, round(fraction * len(rows)))
        moves, news, deletes = int(total * MOVED_SHARE), int(total * NEW_SHARE), int(total * DELETED_SHARE)
        touched = _merge(org, rng, profiles, total - moves - news - deletes, counts, relink)
        survivors = list(profiles.values())
        _map_new_rows(org, make, rng, news, survivors, counts, when, lag, defer_profiles, now - spread)
        untouched = [r for r in rows if r["id"] not in touched]
        picks = rng.sample(untouched, min(len(untouched), moves + deletes))
        for row in picks[:moves]:
            if len(survivors) < 2:
                break
            relink(row["id"], rng.choice([p for p in rng.sample(survivors, 2) if p["id"] != row["profile"]]))
            counts["moved"] += 1
        for row in picks[moves:]:
            org.store.delete(mapping, row["id"])
            counts["deleted"] += 1
    return counts


def _merge(
    org: Organization,
    rng: random.Random,
    profiles: dict[str, dict[str, Any]],
    goal: int,
    counts: dict[str, int],
    relink: Callable[[str, dict[str, Any]], None],
) -> set[str]:
    """Merge profiles into others until ``goal`` mapping rows moved; delete the merged ones.

    ``profiles`` loses the merged profiles; the answer is the mapping rows changed. Picks are drawn by
    index from the sorted ids and redrawn when excluded, which stays cheap on a million profiles.
    """
    ids = list(profiles)
    targets: set[str] = set()
    touched: set[str] = set()
    profile_table = org.entity("msdynci_customerprofile")

    def draw(excluded: set[str]) -> str:
        while True:
            candidate = ids[rng.randrange(len(ids))]
            if candidate in profiles and candidate not in excluded:
                return candidate

    while counts["merged_rows"] < goal and len(profiles) >= 2 and len(profiles) > len(targets):
        victim = draw(targets)
        target = profiles[draw({victim})]
        members = org.store.fetch(
            "SELECT msdynci_alternatekeyid AS id FROM msdynci_alternatekey "
            "WHERE msdynci_lookupfield_customer = ? ORDER BY msdynci_alternatekeyid",
            (victim,),
        )
        for member in members:
            relink(member["id"], target)
            touched.add(member["id"])
        org.store.delete(profile_table, victim)
        del profiles[victim]
        targets.add(target["id"])
        counts["merged_profiles"] += 1
        counts["merged_rows"] += len(members)
    return touched


def _link(profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "msdynci_lookupfield_customer": profile["id"],
        "msdynci_lookupfield_customerpid": profile["pid"],
        "msdynci_customerid": profile["cid"],
    }


def _map_new_rows(
    org: Organization,
    make: _Maker,
    rng: random.Random,
    count: int,
    profiles: list[dict[str, Any]],
    counts: dict[str, int],
    when: Callable[[], int],
    lag: int,
    defer_profiles: bool,
    earliest: int,
) -> None:
    """Map source rows that had no mapping (half existing, half created now) to old or new profiles.

    A new contact is created an hour before ``earliest``, the earliest moment the re-unification may
    stamp, so its mapping row is never older than the contact. With ``defer_profiles`` a new profile is
    held back until ``publish_deferred``: its mapping rows name a profile that does not exist yet.
    """
    contact = org.entity("contact")
    unmapped = [
        r["contactid"]
        for r in org.store.fetch(
            "SELECT contactid FROM contact WHERE contactid NOT IN (SELECT lower(msdynci_alternatevalue) "
            "FROM msdynci_alternatekey WHERE msdynci_entityname = 'contact') ORDER BY contactid"
        )
    ]
    created_at = earliest - 3_600_000_000
    for n in range(count):
        if n % 2 == 0 and unmapped:
            key = unmapped.pop(rng.randrange(len(unmapped)))
            counts["mapped_existing"] += 1
        else:
            key = make.guid()
            row = make.person("contactid", key, created_at)
            org.store.insert(
                contact, {k: v for k, v in row.items() if k != WRITER}, writer=CRM_USER, visible_at=0
            )
            counts["mapped_new"] += 1
        if rng.random() < 0.5:
            source_profile = rng.choice(profiles)
            profile = {
                "msdynci_customerprofileid": source_profile["id"],
                "msdynci_customerid": source_profile["cid"],
                "partitionid": source_profile["pid"],
            }
        else:
            profile = make.profile(earliest)
            profile["modifiedon"] = profile["createdon"] = when()
            profile[VISIBLE_AT] = lag
            counts["new_profiles"] += 1
            if defer_profiles:
                org.deferred.append(profile)
                counts["deferred_profiles"] += 1
            else:
                org.store.insert_many(org.entity("msdynci_customerprofile"), [profile], PROFILE_COLUMNS)
        row = make.mapping(SALES_CONTACT, key, profile, when())
        row[VISIBLE_AT] = lag
        org.store.insert_many(org.entity("msdynci_alternatekey"), [row], MAPPING_COLUMNS)


def publish_deferred(org: Organization) -> int:
    """Write the profiles a deferred re-unification held back (CI-D writing its tables out of order).

    They are written now, so they carry the publishing time and become visible after the read lag from
    now, as a late write would.
    """
    entity = org.entity("msdynci_customerprofile")
    with org.store.transaction():
        now = org.clock.now()
        stamp = store_datetime(now, org.modes.precision)
        rows = [
            {**p, "createdon": stamp, "modifiedon": stamp, VISIBLE_AT: org.visible_at(entity, now)}
            for p in org.deferred
        ]
        count = org.store.insert_many(entity, rows, PROFILE_COLUMNS)
        org.deferred.clear()
    return count
