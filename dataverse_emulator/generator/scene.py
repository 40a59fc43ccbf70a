"""The seeded scene: contacts, leads, profiles and mapping rows as a first unification left them."""

from __future__ import annotations

import itertools
import random
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from ..events import seed_events
from ..organization import Organization
from ..schema import metadata_id
from ..store import VERSION, quote
from .orphans import orphan
from .rows import (
    DAY,
    LOYALTY,
    MAPPING_COLUMNS,
    MARKETING_CONTACT,
    PROFILE_COLUMNS,
    SALES_CONTACT,
    SALES_LEAD,
    SOURCE_COLUMNS,
    Record,
    _guid,
    _Maker,
)

UNMAPPED_SHARE = 0.05
"""Source rows unification left without a profile."""
MARKETING_SHARE = 0.04
"""Sales contacts that the Marketing data source also names (a second mapping row for one contact)."""
CONFLICT_SHARE = 0.5
"""Of those, the ones whose Marketing row names another profile: the newest ``modifiedon`` wins."""
UPPER_SHARE = 0.01
"""Mapping rows whose GUID value is in upper case."""
CHUNK = 5000
"""Rows written per ``executemany`` while seeding: large enough to amortise the call, small enough that
the rows waiting in Python stay a few megabytes."""


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
    unified_at = org.clock.now() - 2 * DAY
    n_contacts, n_leads = org.seed.contacts, org.seed.leads
    keys = _write_source_rows(org, make, unified_at)
    mapped = _shuffled_mapped(rng, n_contacts, n_leads)
    profiles = _Profiles(org, "msdynci_customerprofile", PROFILE_COLUMNS)
    mappings = _Chunked(org, "msdynci_alternatekey", MAPPING_COLUMNS, versions=itertools.count(1))

    def unified() -> int:
        return unified_at + rng.randrange(600_000_000)

    _unify(make, keys, mapped, n_contacts, profiles, mappings, unified)
    _map_stray_keys(make, n_contacts, profiles, mappings, unified)
    profiles.flush()
    mappings.flush()
    _place_mapping_versions(org, len(mappings))
    return {"contacts": n_contacts, "leads": n_leads, "profiles": len(profiles), "mappings": len(mappings)}


def _write_source_rows(org: Organization, make: _Maker, unified_at: int) -> _Keys:
    """Draw every source key, then write the contacts and leads, created within the year before."""
    rng, n_contacts, n_leads = make.rng, org.seed.contacts, org.seed.leads
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
    return keys


def _shuffled_mapped(rng: random.Random, n_contacts: int, n_leads: int) -> array[int]:
    """The source rows unification mapped, in the shuffled order it groups them into profiles.

    Positions into the keys: below ``n_contacts`` a contact, else a lead. Shuffling the array draws as
    shuffling a list of the same length does.
    """
    mapped = array("q", (i for i in range(n_contacts) if rng.random() >= UNMAPPED_SHARE))
    mapped.extend(i for i in range(n_contacts, n_contacts + n_leads) if rng.random() >= UNMAPPED_SHARE)
    rng.shuffle(mapped)
    return mapped


def _unify(
    make: _Maker,
    keys: _Keys,
    mapped: array[int],
    n_contacts: int,
    profiles: _Profiles,
    mappings: _Chunked,
    unified: Callable[[], int],
) -> None:
    """Group the mapped source rows into profiles of one to four, with their mapping rows.

    A Sales contact is sometimes named by Marketing too, then now and then for an earlier profile (a
    conflict); some profiles also have a Loyalty member, a source that is not Dataverse.
    """
    rng = make.rng
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


def _map_stray_keys(
    make: _Maker, n_contacts: int, profiles: _Profiles, mappings: _Chunked, unified: Callable[[], int]
) -> None:
    """Mapping rows whose contact was deleted (a GUID no row has) and a few whose key is not a GUID."""
    rng = make.rng
    for _ in range(max(1, n_contacts // 100) if n_contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, make.guid(), rng.choice(profiles), unified()))
    for n in range(max(1, n_contacts // 1000) if n_contacts else 0):
        if profiles:
            mappings.append(make.mapping(SALES_CONTACT, f"CRM-{n:06d}", rng.choice(profiles), unified()))


def _place_mapping_versions(org: Organization, count: int) -> None:
    """Shift the mapping rows' provisional versions 1, 2, … to follow every version written before."""
    first = org.store.reserve_versions(count)
    if count and first != 1:
        org.store.execute(
            f"UPDATE {quote('msdynci_alternatekey')} SET {VERSION} = {VERSION} + ?", (first - 1,)
        )


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
