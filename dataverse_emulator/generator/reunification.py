"""Re-unification: a new unification moving, adding and deleting mapping rows and merging profiles."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from ..organization import CID_USER, Organization
from ..store import VERSION, VISIBLE_AT, WRITER, quote
from ..values import store_datetime
from .ranked import _Ranked
from .rows import (
    CRM_USER,
    MAPPING_COLUMNS,
    PROFILE_COLUMNS,
    SALES_CONTACT,
    SOURCES,
    Record,
    _Maker,
)

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
