"""Deterministic data shaped like Customer Insights - Data's unification output, and re-unification.

``seed_organization`` fills contacts, leads, profiles and mapping rows from a seed: several source rows
merged into one profile, source rows with no mapping, mapping rows whose source row was deleted, two
Dataverse data sources feeding ``contact`` (some naming different profiles: conflicts), a source that is
not Dataverse, a few keys in upper case and a few that are not GUIDs; on request (``orphans``), a chosen
share of a table's mapped rows deleted after unification. ``reunify`` changes a fraction of
the mapping as a new unification would: moves, new mapped rows, deleted mapping rows, and profiles
merged away and deleted, each with a new ``modifiedon``.
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
from array import array
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from .events import seed_events
from .organization import CID_USER, Organization
from .schema import metadata_id
from .store import VERSION, VISIBLE_AT, WRITER, Store, quote
from .values import store_datetime

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
Record = Mapping[str, Any] | sqlite3.Row
"""A profile as the generator passes it around: a row it made, or one read back from SQLite."""
CHUNK = 5000
"""Rows written per ``executemany`` while seeding: large enough to amortise the call, small enough that
the rows waiting in Python stay a few megabytes."""
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


def seed_organization(org: Organization) -> dict[str, int]:
    """Rebuild every table and fill it from ``org.seed``; return the row counts.

    One transaction holds it all: SQLite then writes once instead of committing every row. Rows are
    written in chunks as they are made and the secondary indexes are built once at the end, so a
    million contacts seed in bounded memory (see ``_seed``).
    """
    store = org.store
    with store.transaction():
        org.rebuild()
        tables = [
            org.entity(t) for t in ("contact", "lead", "msdynci_customerprofile", "msdynci_alternatekey")
        ]
        with store.deferred_indexes(*tables):
            counts = _seed(org)
        for table, share in org.seed.orphans.items():
            counts[f"orphaned_{table}"] = orphan(org, table, share)
        sync_message_filters(org)
        seed_events(org)
    return counts


ORPHAN_TABLES = ("contact", "lead")
"""The source tables whose rows ``orphan`` can delete."""


def orphan_shares(value: object) -> dict[str, float]:
    """Read the ``orphans`` seed parameter, ``{source table: share of its mapped rows}``, strictly."""
    if not isinstance(value, dict):
        raise ValueError("'orphans' must be an object: source table -> share of its mapped rows to delete")
    for table, share in value.items():
        if table not in ORPHAN_TABLES:
            raise ValueError(f"'orphans' names {table!r}; only {', '.join(ORPHAN_TABLES)} can be orphaned")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"'orphans' share of {table} must be a number from 0 to 1")
    return {table: float(share) for table, share in value.items()}


def orphan(org: Organization, table: str, share: float) -> int:
    """Delete ``share`` of a table's mapped rows; return how many mapping rows now name no row.

    Users delete leads and contacts after a unification; their mapping rows stay behind until the next
    unification, as CI-D's do. The rows deleted are those whose first mapping row has the lowest id:
    ids come from the seed, so the choice is deterministic, and it is unrelated to ``modifiedon``, so a
    sample of the newest mapping rows sees about ``share`` of them orphaned. A row named by several
    data sources orphans each of its mapping rows.
    """
    entity = org.entity(table)
    key = quote(entity.primary_id)
    sources = [s for s in SOURCES if s.dataverse and s.table == table]
    where = " OR ".join("(m.msdynci_datasourcename = ? AND m.msdynci_entityname = ?)" for _ in sources)
    mapped = org.store.fetch(
        f"SELECT t.{key} AS id, COUNT(*) AS mappings FROM {quote(table)} t "
        f"JOIN msdynci_alternatekey m ON lower(trim(m.msdynci_alternatevalue, '{{}}')) = t.{key} "
        f"WHERE {where} GROUP BY t.{key} ORDER BY MIN(m.msdynci_alternatekeyid)",
        [name for s in sources for name in (s.datasource, s.entity)],
    )
    chosen = mapped[: round(share * len(mapped))]
    for row in chosen:
        org.store.delete(entity, row["id"])
    return sum(int(row["mappings"]) for row in chosen)


class _Keys:
    """The seeded source keys, 16 bytes each, by position: contacts first, then leads.

    The unification draws its source rows in shuffled order, so every key must stay at hand; as raw
    bits they cost 16 bytes a row (19 MB for 1.2 million) instead of about 130 as ``str`` objects.
    """

    def __init__(self) -> None:
        self._bits = bytearray()

    def append(self, bits: int) -> None:
        self._bits += bits.to_bytes(16, "big")

    def __getitem__(self, index: int) -> str:
        return _guid(int.from_bytes(self._bits[16 * index : 16 * index + 16], "big"))


class _Chunked:
    """Rows of one table, written a chunk at a time as they are made.

    ``versions`` gives the rows provisional versions instead of new ones (see ``_seed``).
    """

    def __init__(
        self, org: Organization, table: str, columns: tuple[str, ...], versions: Iterator[int] | None = None
    ) -> None:
        self.store = org.store
        self.entity = org.entity(table)
        self.columns = columns
        self.versions = versions
        self.written = 0
        self.pending: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        self.written += self.store.insert_many(
            self.entity, self.pending, self.columns, versions=self.versions
        )
        self.pending = []

    def __len__(self) -> int:
        return self.written + len(self.pending)


class _Profiles(_Chunked, Sequence[Record]):
    """The seeded profiles, also readable by position, as the generator picks earlier ones at random.

    A written profile is read back by its ``rowid``: the table was created empty and is only appended
    to while seeding, so the n-th profile made has rowid n.
    """

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if isinstance(index, slice) or not 0 <= index < len(self):
            raise IndexError(index)
        if index >= self.written:
            return self.pending[index - self.written]
        rows = self.store.fetch(
            "SELECT msdynci_customerprofileid, msdynci_customerid, partitionid "
            "FROM msdynci_customerprofile WHERE rowid = ?",
            (index + 1,),
        )
        return rows[0]


class _Prefix(Sequence[Record]):
    """The first ``length`` items of a sequence, without copying them (``profiles[:-1]`` would)."""

    def __init__(self, items: Sequence[Record], length: int) -> None:
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if isinstance(index, slice) or not 0 <= index < self.length:
            raise IndexError(index)
        return self.items[index]


def _seed(org: Organization) -> dict[str, int]:
    """Make and write the rows, drawing from one random generator in a fixed order.

    The order of the draws is that of the first, list-based version of this generator, so a seed gives
    the same data as it always did (row versions included). What held every row now streams: source
    rows go straight to the store; the unification's shuffled source rows are positions in an
    ``array`` (8 bytes each) into the 16-byte keys (``_Keys``); profiles and mapping rows are written in
    chunks and earlier profiles read back by position (``_Profiles``). Mapping rows were written after
    all profiles, so their versions follow the last profile's: they are written with provisional
    versions 1, 2, … and shifted once the number of profiles is known.
    """
    rng = random.Random(org.seed.seed)
    make = _Maker(org, rng)
    now = org.clock.now()
    unified_at = now - 2 * DAY
    n_contacts, n_leads = org.seed.contacts, org.seed.leads
    keys = _Keys()
    for _ in range(n_contacts + n_leads):
        keys.append(rng.getrandbits(128))
    contact_rows = (
        make.person("contactid", keys[i], unified_at - rng.randrange(365 * DAY)) for i in range(n_contacts)
    )
    lead_rows = (
        make.person("leadid", keys[i], unified_at - rng.randrange(365 * DAY))
        for i in range(n_contacts, n_contacts + n_leads)
    )
    org.store.insert_many(org.entity("contact"), contact_rows, ("contactid", *SOURCE_COLUMNS))
    org.store.insert_many(org.entity("lead"), lead_rows, ("leadid", *SOURCE_COLUMNS))

    # Positions into ``keys``: below n_contacts a contact, else a lead. Shuffling the array draws as
    # shuffling a list of the same length does.
    mapped = array("q", (i for i in range(n_contacts) if rng.random() >= UNMAPPED_SHARE))
    mapped.extend(i for i in range(n_contacts, n_contacts + n_leads) if rng.random() >= UNMAPPED_SHARE)
    rng.shuffle(mapped)
    profiles = _Profiles(org, "msdynci_customerprofile", PROFILE_COLUMNS)
    mappings = _Chunked(org, "msdynci_alternatekey", MAPPING_COLUMNS, versions=itertools.count(1))

    def unified(offset_limit: int = 600_000_000) -> int:
        return unified_at + rng.randrange(offset_limit)

    index = 0
    while index < len(mapped):
        size = rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
        profile = make.profile(unified())
        profiles.append(profile)
        for position in mapped[index : index + size]:
            source, key = (SALES_CONTACT if position < n_contacts else SALES_LEAD), keys[position]
            value = key.upper() if rng.random() < UPPER_SHARE else key
            row = make.mapping(source, value, profile, unified())
            mappings.append(row)
            if source is SALES_CONTACT and rng.random() < MARKETING_SHARE:
                earlier = _Prefix(profiles, len(profiles) - 1)
                other = rng.choice(earlier) if earlier and rng.random() < CONFLICT_SHARE else profile
                at = row["modifiedon"] + rng.choice((-5, 5)) * 1_000_000
                mappings.append(make.mapping(MARKETING_CONTACT, key, other, at))
        if rng.random() < 0.3:
            mappings.append(make.mapping(LOYALTY, f"LOY-{rng.randrange(10**7):07d}", profile, unified()))
        index += size
    for _ in range(max(1, n_contacts // 100) if n_contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, make.guid(), rng.choice(profiles), unified()))
    for n in range(max(1, n_contacts // 1000) if n_contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, f"CRM-{n:06d}", rng.choice(profiles), unified()))
    profiles.flush()
    mappings.flush()
    first = org.store.reserve_versions(len(mappings))
    if len(mappings) and first != 1:
        org.store.execute(
            f"UPDATE {quote('msdynci_alternatekey')} SET {VERSION} = {VERSION} + ?", (first - 1,)
        )
    return {"contacts": n_contacts, "leads": n_leads, "profiles": len(profiles), "mappings": len(mappings)}


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


class _Ranked(Sequence[sqlite3.Row]):
    """The rows of a query in its order, by position, kept in a temporary SQLite table.

    Re-unification draws rows at random positions of sorted lists (every Dataverse mapping row, every
    profile, every unmapped contact); at a million rows those lists were most of its memory. The
    temporary table holds the list on disk, ``pos`` giving each row's position, so a draw is one
    indexed read. Positions can be removed (a merged profile, a contact that got a mapping row) and
    later positions close up as they did with ``list.pop``, so a seed draws the same rows as the lists
    did. Removed positions are kept in memory: they are the changes, a small part of the rows.
    """

    def __init__(
        self, store: Store, name: str, columns: Sequence[str], select: str, params: Sequence[Any] = ()
    ) -> None:
        self.store, self.name = store, quote(name)
        names = ", ".join(quote(c) for c in columns)
        store.execute(f"DROP TABLE IF EXISTS temp.{self.name}")
        store.execute(f"CREATE TEMP TABLE {self.name} (pos INTEGER PRIMARY KEY, {names})")
        # INSERT … SELECT … ORDER BY inserts in that order, so ``pos`` (the rowid) counts 1, 2, … along it.
        self.size = store.execute(f"INSERT INTO temp.{self.name} ({names}) {select}", params).rowcount
        self._removed: list[int] = []
        self._removed_set: set[int] = set()

    def drop(self) -> None:
        """Remove the temporary table."""
        self.store.execute(f"DROP TABLE IF EXISTS temp.{self.name}")

    def at(self, position: int) -> sqlite3.Row:
        """The row at ``position`` of the original order, removed or not."""
        return self.store.fetch(f"SELECT * FROM temp.{self.name} WHERE pos = ?", (position + 1,))[0]

    def removed(self, position: int) -> bool:
        """Whether the row at ``position`` of the original order has been removed."""
        return position in self._removed_set

    def remove(self, position: int) -> None:
        """Remove the row at ``position`` of the original order; later rows move up one place."""
        if position not in self._removed_set:
            insort(self._removed, position)
            self._removed_set.add(position)

    def position(self, index: int) -> int:
        """The original position of the ``index``-th remaining row.

        It is the least ``p`` with ``p = index + (removed positions <= p)``; iterating from ``index``
        climbs to it, and that least solution is never itself removed.
        """
        position = index
        while True:
            following = index + bisect_right(self._removed, position)
            if following == position:
                return position
            position = following

    def pop(self, index: int) -> sqlite3.Row:
        """Remove and return the ``index``-th remaining row, as ``list.pop(index)``."""
        position = self.position(index)
        row = self.at(position)
        self.remove(position)
        return row

    def __len__(self) -> int:
        return self.size - len(self._removed)

    @overload
    def __getitem__(self, index: int) -> sqlite3.Row: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[sqlite3.Row]: ...

    def __getitem__(self, index: int | slice) -> sqlite3.Row | Sequence[sqlite3.Row]:
        if isinstance(index, slice) or not 0 <= index < len(self):
            raise IndexError(index)
        return self.at(self.position(index))

    def __iter__(self) -> Iterator[sqlite3.Row]:
        """The remaining rows in order, in one query (``random.sample`` lists a small population)."""
        for row in self.store.iterate(f"SELECT * FROM temp.{self.name} ORDER BY pos"):
            if row["pos"] - 1 not in self._removed_set:
                yield row


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

    The sorted lists it draws from live in temporary tables (``_Ranked``), so memory stays bounded at
    a million rows; the draws are those of the list-based version, so a seed changes the same rows.
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if spread_seconds < 0:
        raise ValueError("spread_seconds must be >= 0")
    rng = random.Random(seed)
    make = _Maker(org, rng, fresh=True)
    store = org.store
    mapping = org.entity("msdynci_alternatekey")
    counts = dict.fromkeys(CHANGES, 0)
    now = org.clock.now() if now is None else now
    lag = org.visible_at(mapping, now)

    spread = int(spread_seconds * 1_000_000)

    def when() -> int:
        return make.stamp(now - int(rng.uniform(0, spread)))

    def relink(key: str, profile: Record) -> None:
        values = {**_link(profile), "modifiedon": when()}
        store.update(mapping, key, values, writer=CID_USER, visible_at=lag)

    with store.transaction():
        dv = [s.datasource for s in SOURCES if s.dataverse]
        in_dv = f"msdynci_datasourcename IN ({','.join('?' * len(dv))})"
        table = quote(mapping.logical_name)
        rows = int(store.fetch(f"SELECT COUNT(*) FROM {table} WHERE {in_dv}", dv)[0][0])
        if not rows or store.count(org.entity("msdynci_customerprofile")) < 2:
            return counts
        before = store.last_version  # rows with a greater version were written by this run
        ranked: list[_Ranked] = []
        try:
            profiles = _Ranked(
                store,
                "_reunify_profiles",
                ("id", "cid", "pid"),
                "SELECT msdynci_customerprofileid, msdynci_customerid, partitionid "
                "FROM msdynci_customerprofile NOT INDEXED ORDER BY msdynci_customerprofileid",
            )
            ranked.append(profiles)
            total = max(1, round(fraction * rows))
            moves, news = int(total * MOVED_SHARE), int(total * NEW_SHARE)
            deletes = int(total * DELETED_SHARE)
            _merge(org, rng, profiles, total - moves - news - deletes, counts, relink)
            survivors = profiles  # the merged ones are removed from it
            _map_new_rows(org, make, rng, news, survivors, counts, when, lag, defer_profiles, now - spread)
            # Neither merged away nor added by this run: exactly the rows not written since ``before``.
            untouched = _Ranked(
                store,
                "_reunify_untouched",
                ("id", "profile"),
                f"SELECT msdynci_alternatekeyid, msdynci_lookupfield_customer FROM {table} NOT INDEXED "
                f"WHERE {in_dv} AND {VERSION} <= ? ORDER BY msdynci_alternatekeyid",
                [*dv, before],
            )
            ranked.append(untouched)
            picks = rng.sample(untouched, min(len(untouched), moves + deletes))
            for row in picks[:moves]:
                if len(survivors) < 2:
                    break
                pair = rng.sample(survivors, 2)
                relink(row["id"], rng.choice([p for p in pair if p["id"] != row["profile"]]))
                counts["moved"] += 1
            for row in picks[moves:]:
                store.delete(mapping, row["id"])
                counts["deleted"] += 1
        finally:
            for table_of_rows in ranked:
                table_of_rows.drop()
    return counts


def _merge(
    org: Organization,
    rng: random.Random,
    profiles: _Ranked,
    goal: int,
    counts: dict[str, int],
    relink: Callable[[str, Record], None],
) -> None:
    """Merge profiles into others until ``goal`` mapping rows moved; delete the merged ones.

    The merged profiles are removed from ``profiles``. Picks are drawn by position among all the
    sorted profiles and redrawn when merged or excluded, which stays cheap on a million profiles.
    """
    targets: set[int] = set()
    profile_table = org.entity("msdynci_customerprofile")

    def draw(excluded: set[int]) -> int:
        while True:
            candidate = rng.randrange(profiles.size)
            if not profiles.removed(candidate) and candidate not in excluded:
                return candidate

    while counts["merged_rows"] < goal and len(profiles) >= 2 and len(profiles) > len(targets):
        victim = draw(targets)
        target_position = draw({victim})
        target = profiles.at(target_position)
        victim_id = profiles.at(victim)["id"]
        members = org.store.fetch(
            "SELECT msdynci_alternatekeyid AS id FROM msdynci_alternatekey "
            "WHERE msdynci_lookupfield_customer = ? ORDER BY msdynci_alternatekeyid",
            (victim_id,),
        )
        for member in members:
            relink(member["id"], target)
        org.store.delete(profile_table, victim_id)
        profiles.remove(victim)
        targets.add(target_position)
        counts["merged_profiles"] += 1
        counts["merged_rows"] += len(members)


def _link(profile: Record) -> dict[str, Any]:
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
    profiles: Sequence[Record],
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
    # Contacts no contact mapping row names. EXCEPT sorts both sides and merges them (2 s at a
    # million contacts); ``NOT IN`` built and probed a table of every value (9 s), and a NULL value
    # among them would have hidden every contact.
    unmapped = _Ranked(
        org.store,
        "_reunify_unmapped",
        ("contactid",),
        "SELECT contactid FROM contact EXCEPT SELECT lower(msdynci_alternatevalue) "
        "FROM msdynci_alternatekey WHERE msdynci_entityname = 'contact' ORDER BY 1",
    )
    try:
        created_at = earliest - 3_600_000_000
        for n in range(count):
            if n % 2 == 0 and unmapped:
                key = unmapped.pop(rng.randrange(len(unmapped)))["contactid"]
                counts["mapped_existing"] += 1
            else:
                key = make.guid("contact")
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
    finally:
        unmapped.drop()


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
