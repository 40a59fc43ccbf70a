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
    _check(fraction, spread_seconds)
    rng = random.Random(seed)
    stamper = _Stamper(
        org, _Maker(org, rng, fresh=True), org.clock.now() if now is None else now, spread_seconds
    )
    counts = dict.fromkeys(CHANGES, 0)
    with org.store.transaction():
        rows = _dataverse_mappings(org)
        if not rows or org.store.count(org.entity("msdynci_customerprofile")) < 2:
            return counts
        before = org.store.last_version  # rows with a greater version were written by this run
        ranked: list[_Ranked] = []
        try:
            profiles = _rank_profiles(org)
            ranked.append(profiles)
            total = max(1, round(fraction * rows))
            moves, news, deletes = (int(total * share) for share in (MOVED_SHARE, NEW_SHARE, DELETED_SHARE))
            _merge(org, rng, profiles, total - moves - news - deletes, counts, stamper.relink)
            survivors = profiles  # the merged ones are removed from it
            _map_new_rows(stamper, news, survivors, counts, defer_profiles)
            untouched = _rank_untouched(org, before)
            ranked.append(untouched)
            _move_or_delete(
                stamper, rng.sample(untouched, min(len(untouched), moves + deletes)), moves, survivors, counts
            )
        finally:
            for table_of_rows in ranked:
                table_of_rows.drop()
    return counts


def _dataverse_mappings(org: Organization) -> int:
    """How many mapping rows Dataverse data sources have: the base ``fraction`` is a share of."""
    return int(org.store.fetch(f"SELECT COUNT(*) FROM {_MAPPING} WHERE {_IN_DATAVERSE}", _DATAVERSE)[0][0])


def _check(fraction: float, spread_seconds: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if spread_seconds < 0:
        raise ValueError("spread_seconds must be >= 0")


def _rank_profiles(org: Organization) -> _Ranked:
    """Every profile by id: merge victims and targets, and old profiles for moved and new rows."""
    return _Ranked(
        org.store,
        "_reunify_profiles",
        ("id", "cid", "pid"),
        "SELECT msdynci_customerprofileid, msdynci_customerid, partitionid "
        "FROM msdynci_customerprofile NOT INDEXED ORDER BY msdynci_customerprofileid",
    )


def _rank_untouched(org: Organization, before: int) -> _Ranked:
    """The Dataverse mapping rows neither merged away nor added by this run: not written since ``before``."""
    return _Ranked(
        org.store,
        "_reunify_untouched",
        ("id", "profile"),
        f"SELECT msdynci_alternatekeyid, msdynci_lookupfield_customer FROM {_MAPPING} NOT INDEXED "
        f"WHERE {_IN_DATAVERSE} AND {VERSION} <= ? ORDER BY msdynci_alternatekeyid",
        [*_DATAVERSE, before],
    )


_DATAVERSE = [s.datasource for s in SOURCES if s.dataverse]
_IN_DATAVERSE = f"msdynci_datasourcename IN ({','.join('?' * len(_DATAVERSE))})"
"""The mapping rows of Dataverse data sources, the only ones re-unification changes."""
_MAPPING = quote("msdynci_alternatekey")


class _Stamper:
    """How one run writes what it changes: ``modifiedon`` up to the spread before ``now``, and the lag.

    ``when`` draws from the run's random generator, so the order of its calls is part of the seed's
    outcome.
    """

    def __init__(self, org: Organization, make: _Maker, now: int, spread_seconds: float) -> None:
        self.org, self.make, self.rng = org, make, make.rng
        self.mapping = org.entity("msdynci_alternatekey")
        self.now = now
        self.lag = org.visible_at(self.mapping, now)
        self.spread = int(spread_seconds * 1_000_000)
        self.earliest = now - self.spread
        """The earliest moment the run may stamp."""

    def when(self) -> int:
        """A ``modifiedon`` for a changed row."""
        return self.make.stamp(self.now - int(self.rng.uniform(0, self.spread)))

    def relink(self, key: str, profile: Record) -> None:
        """Point mapping row ``key`` at ``profile``."""
        values = {**_link(profile), "modifiedon": self.when()}
        self.org.store.update(self.mapping, key, values, writer=CID_USER, visible_at=self.lag)


def _move_or_delete(
    stamper: _Stamper, picks: list[Any], moves: int, survivors: _Ranked, counts: dict[str, int]
) -> None:
    """Move the first ``moves`` picked rows to another surviving profile and delete the rest."""
    rng = stamper.rng
    for row in picks[:moves]:
        if len(survivors) < 2:
            break
        pair = rng.sample(survivors, 2)
        stamper.relink(row["id"], rng.choice([p for p in pair if p["id"] != row["profile"]]))
        counts["moved"] += 1
    for row in picks[moves:]:
        stamper.org.store.delete(stamper.mapping, row["id"])
        counts["deleted"] += 1


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
    stamper: _Stamper, count: int, profiles: Sequence[Record], counts: dict[str, int], defer_profiles: bool
) -> None:
    """Map source rows that had no mapping (half existing, half created now) to old or new profiles.

    A new contact is created an hour before the earliest moment the re-unification may stamp, so its
    mapping row is never older than the contact. With ``defer_profiles`` a new profile is held back
    until ``publish_deferred``: its mapping rows name a profile that does not exist yet.
    """
    org, make, rng = stamper.org, stamper.make, stamper.rng
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
        for n in range(count):
            if n % 2 == 0 and unmapped:
                key = unmapped.pop(rng.randrange(len(unmapped)))["contactid"]
                counts["mapped_existing"] += 1
            else:
                key = _new_contact(stamper)
                counts["mapped_new"] += 1
            profile = rng.choice(profiles) if rng.random() < 0.5 else None
            target = _new_profile(stamper, counts, defer_profiles) if profile is None else _as_made(profile)
            row = make.mapping(SALES_CONTACT, key, target, stamper.when())
            row[VISIBLE_AT] = stamper.lag
            org.store.insert_many(org.entity("msdynci_alternatekey"), [row], MAPPING_COLUMNS)
    finally:
        unmapped.drop()


def _new_contact(stamper: _Stamper) -> str:
    """Create a contact an hour before the run's earliest stamp; return its id."""
    key = stamper.make.guid("contact")
    row = stamper.make.person("contactid", key, stamper.earliest - 3_600_000_000)
    stamper.org.store.insert(
        stamper.org.entity("contact"),
        {k: v for k, v in row.items() if k != WRITER},
        writer=CRM_USER,
        visible_at=0,
    )
    return key


def _as_made(profile: Record) -> dict[str, Any]:
    """An existing profile (as ``_Ranked`` holds it) in the columns a new profile has."""
    return {
        "msdynci_customerprofileid": profile["id"],
        "msdynci_customerid": profile["cid"],
        "partitionid": profile["pid"],
    }


def _new_profile(stamper: _Stamper, counts: dict[str, int], defer_profiles: bool) -> dict[str, Any]:
    """A profile this run creates: written now, or held back until ``publish_deferred``."""
    org = stamper.org
    profile = stamper.make.profile(stamper.earliest)
    profile["modifiedon"] = profile["createdon"] = stamper.when()
    profile[VISIBLE_AT] = stamper.lag
    counts["new_profiles"] += 1
    if defer_profiles:
        org.deferred.append(profile)
        counts["deferred_profiles"] += 1
    else:
        org.store.insert_many(org.entity("msdynci_customerprofile"), [profile], PROFILE_COLUMNS)
    return profile


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
