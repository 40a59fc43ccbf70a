"""The seeded data and re-unification, read back through the Web API as the product reads them.

The emulator's worth as a test bed rests on its data looking like Customer Insights - Data's
unification output (merged profiles, unmapped rows, orphans, conflicts between data sources, keys in
odd shapes) and on re-unification changing it the way a new unification run does, deterministically.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
import requests

from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATAVERSE_SOURCES = {
    ("DataverseSales", "contact"),
    ("DataverseSales", "lead"),
    ("DataverseMarketing", "contact"),
}
MAPPING_SELECT = (
    "msdynci_alternatekeyid,msdynci_datasourcename,msdynci_entityname,msdynci_alternatevalue,"
    "msdynci_customerid,msdynci_identifier,msdynci_keyring,_msdynci_lookupfield_customer_value,"
    "msdynci_lookupfield_customerpid,modifiedon"
)
PROFILE_SELECT = "msdynci_customerprofileid,msdynci_customerid,partitionid"
LOOKUP = "_msdynci_lookupfield_customer_value"


def read_all(api: WebApi, entity_set: str, select: str, page: int = 250) -> list[dict[str, Any]]:
    """Every row of a table, following ``@odata.nextLink`` with the same page size."""
    rows: list[dict[str, Any]] = []
    url: str | None = f"{entity_set}?$select={select}"
    headers = {"Prefer": f"odata.maxpagesize={page}"}
    while url:
        response = api.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["value"]) <= page
        rows += body["value"]
        url = body.get("@odata.nextLink")
    return rows


def by_key(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Rows by their primary key, checking each key appears once."""
    keyed = {row[key]: row for row in rows}
    assert len(keyed) == len(rows), f"duplicate {key} across pages"
    return keyed


def scene(api: WebApi) -> dict[str, dict[str, dict[str, Any]]]:
    """Contacts, leads, profiles and mapping rows, each by key."""
    return {
        "contacts": by_key(read_all(api, "contacts", "contactid,fullname,emailaddress1"), "contactid"),
        "leads": by_key(read_all(api, "leads", "leadid,fullname"), "leadid"),
        "profiles": by_key(
            read_all(api, "msdynci_customerprofiles", PROFILE_SELECT), "msdynci_customerprofileid"
        ),
        "mappings": by_key(read_all(api, "msdynci_alternatekeys", MAPPING_SELECT), "msdynci_alternatekeyid"),
    }


def without_times(data: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The scene without ``modifiedon`` (seeded times follow the clock, everything else the seed)."""
    return {
        table: {
            key: {k: v for k, v in row.items() if k not in ("modifiedon", "@odata.etag")}
            for key, row in rows.items()
        }
        for table, rows in data.items()
    }


def micros(text: str) -> int:
    """A Web API date-time as epoch microseconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


# -- seeding ------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(
    emulator: EmulatorClient, api: WebApi
) -> None:
    first = without_times(scene(api))
    emulator.reset(contacts=300, leads=150, seed=7)
    second = without_times(scene(api))
    assert second == first
    emulator.reset(contacts=300, leads=150, seed=8)
    other = without_times(scene(api))
    for table in ("contacts", "leads", "profiles", "mappings"):
        assert first[table], table
        assert not set(first[table]) & set(other[table]), table


def test_counts_follow_the_reset_parameters(emulator: EmulatorClient, api: WebApi) -> None:
    seeded = emulator.reset(contacts=120, leads=40, seed=11)["seeded"]
    data = scene(api)
    assert seeded["contacts"] == len(data["contacts"]) == 120
    assert seeded["leads"] == len(data["leads"]) == 40
    assert seeded["profiles"] == len(data["profiles"])
    assert seeded["mappings"] == len(data["mappings"])
    assert 0 < seeded["profiles"] < 160 < seeded["mappings"]


def test_an_empty_scene_has_no_rows(emulator: EmulatorClient, api: WebApi) -> None:
    seeded = emulator.reset(contacts=0, leads=0, seed=1)["seeded"]
    assert seeded == {"contacts": 0, "leads": 0, "profiles": 0, "mappings": 0}
    assert all(not rows for rows in scene(api).values())


def test_mapping_rows_are_shaped_like_unification_output(api: WebApi) -> None:
    data = scene(api)
    profiles = data["profiles"]
    assert data["mappings"]
    for row in data["mappings"].values():
        source, entity, value = (
            row["msdynci_datasourcename"],
            row["msdynci_entityname"],
            row["msdynci_alternatevalue"],
        )
        assert row["msdynci_identifier"] == f"{source}|{entity}|{value}"
        keyring = json.loads(row["msdynci_keyring"])
        assert keyring == [{"DataSourceName": source, "EntityName": entity, "PreferredKey": value}]
        profile = profiles[row[LOOKUP]]
        assert row["msdynci_customerid"] == profile["msdynci_customerid"]
        assert re.fullmatch(r"[0-9a-f]{32}", row["msdynci_customerid"])
        assert row["msdynci_lookupfield_customerpid"] is None
    for profile in profiles.values():
        assert profile["partitionid"] is None


def test_the_mapping_holds_what_real_unification_leaves_behind(emulator: EmulatorClient, api: WebApi) -> None:
    data = scene(api)
    mappings = list(data["mappings"].values())
    members: dict[str, int] = defaultdict(int)
    for row in mappings:
        members[row[LOOKUP]] += 1
    assert set(members) == set(data["profiles"]), "every profile has a mapping row"
    assert max(members.values()) >= 3, "several source rows merged into one profile"
    assert sum(1 for n in members.values() if n >= 2) >= 20

    assert {(r["msdynci_datasourcename"], r["msdynci_entityname"]) for r in mappings} == {
        *DATAVERSE_SOURCES,
        ("LoyaltyPlatform", "Members"),
    }
    assert emulator.sources() == [
        {"datasource": "DataverseSales", "entity": "contact", "table": "contact", "dataverse": True},
        {"datasource": "DataverseSales", "entity": "lead", "table": "lead", "dataverse": True},
        {"datasource": "DataverseMarketing", "entity": "contact", "table": "contact", "dataverse": True},
        {"datasource": "LoyaltyPlatform", "entity": "Members", "table": None, "dataverse": False},
    ]

    for table, rows in (("contact", data["contacts"]), ("lead", data["leads"])):
        named = {
            r["msdynci_alternatevalue"].lower()
            for r in mappings
            if (r["msdynci_datasourcename"], r["msdynci_entityname"]) in DATAVERSE_SOURCES
            and r["msdynci_entityname"] == table
        }
        unmapped = set(rows) - named
        assert 0.01 * len(rows) <= len(unmapped) <= 0.12 * len(rows), (table, len(unmapped))
        orphans = {v for v in named if GUID.match(v)} - set(rows)
        if table == "contact":
            assert len(orphans) >= 2, "mapping rows whose contact was deleted"

    values = [r["msdynci_alternatevalue"] for r in mappings]
    upper = [v for v in values if GUID.match(v.lower()) and v == v.upper()]
    assert upper, "some keys are upper-case GUIDs"
    assert all(v.lower() in data["contacts"] or v.lower() in data["leads"] for v in upper)
    not_guids = {v for v in values if not GUID.match(v.lower())}
    assert any(v.startswith("LOY-") for v in not_guids)
    assert any(v.startswith("CRM-") for v in not_guids), "a Dataverse source row keyed by a non-GUID"


def test_conflicting_data_sources_are_resolved_by_the_newest_row(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.modes(modifiedon_precision="millisecond")
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in read_all(api, "msdynci_alternatekeys", MAPPING_SELECT):
        if row["msdynci_entityname"] == "contact" and row["msdynci_datasourcename"] != "LoyaltyPlatform":
            rows[row["msdynci_alternatevalue"].lower()].append(row)
    conflicts = {k: v for k, v in rows.items() if len({r[LOOKUP] for r in v}) > 1}
    assert conflicts, "one contact named by two data sources with different profiles"
    truth = {r["id"]: r for r in emulator.links("contact", rows="all")["rows"]}
    winners = set()
    for contact, candidates in conflicts.items():
        assert {r["msdynci_datasourcename"] for r in candidates} == {"DataverseSales", "DataverseMarketing"}
        newest = max(candidates, key=lambda r: (r["modifiedon"], r["msdynci_alternatekeyid"]))
        assert truth[contact]["expected"] == newest[LOOKUP]
        winners.add(newest["msdynci_datasourcename"])
    assert winners == {"DataverseSales", "DataverseMarketing"}, "either source can be the newer"


def test_custom_partitions_are_carried_by_profiles_and_mapping_rows(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.reset(contacts=100, leads=30, seed=4, modes={"profile_partitions": "custom"})
    data = scene(api)
    partitions = {key: p["partitionid"] for key, p in data["profiles"].items()}
    assert all(isinstance(pid, str) and pid for pid in partitions.values())
    assert len(set(partitions.values())) == len(partitions)
    for row in data["mappings"].values():
        assert row["msdynci_lookupfield_customerpid"] == partitions[row[LOOKUP]]
    profile, pid = next(iter(partitions.items()))
    by_partition = api.get(
        f"msdynci_customerprofiles(msdynci_customerprofileid={profile},partitionid='{pid}')"
    )
    assert by_partition.status_code == 200, by_partition.text
    assert by_partition.json()["partitionid"] == pid


# -- re-unification -----------------------------------------------------------------------------------


def reunify_and_compare(
    emulator: EmulatorClient, api: WebApi, **options: Any
) -> tuple[dict[str, int], dict[str, Any], dict[str, Any], int]:
    """Snapshot, re-unify, snapshot; return the counts, both scenes and the server time before."""
    emulator.modes(modifiedon_precision="millisecond")
    before = scene(api)
    started = emulator.now()
    counts = emulator.reunify(options.pop("fraction", 0.02), **options)
    return counts, before, scene(api), started


def test_reunify_changes_exactly_what_it_reports(emulator: EmulatorClient, api: WebApi) -> None:
    counts, before, after, started = reunify_and_compare(emulator, api, seed=5)
    old, new = before["mappings"], after["mappings"]
    dataverse_rows = sum(
        1 for r in old.values() if (r["msdynci_datasourcename"], r["msdynci_entityname"]) in DATAVERSE_SOURCES
    )
    changed_total = counts["moved"] + counts["mapped_existing"] + counts["mapped_new"]
    changed_total += counts["deleted"] + counts["merged_rows"]
    assert 0.015 * dataverse_rows <= changed_total <= 0.035 * dataverse_rows, counts
    for name in ("moved", "mapped_existing", "mapped_new", "deleted", "merged_profiles", "merged_rows"):
        assert counts[name] >= 1, name
    assert counts["deferred_profiles"] == 0

    assert len(set(old) - set(new)) == counts["deleted"]

    gone_profiles = set(before["profiles"]) - set(after["profiles"])
    added_profiles = set(after["profiles"]) - set(before["profiles"])
    assert len(gone_profiles) == counts["merged_profiles"]
    assert len(added_profiles) == counts["new_profiles"]
    assert all(row[LOOKUP] in after["profiles"] for row in new.values()), "no row names a missing profile"

    merged_rows = 0
    for victim in gone_profiles:
        former = [key for key, row in old.items() if row[LOOKUP] == victim]
        assert all(key in new for key in former), "merged rows are kept, renamed"
        targets = {new[key][LOOKUP] for key in former}
        assert len(targets) == 1
        assert targets <= set(before["profiles"]) - gone_profiles
        target = after["profiles"][targets.pop()]
        assert all(new[key]["msdynci_customerid"] == target["msdynci_customerid"] for key in former)
        merged_rows += len(former)
    assert merged_rows == counts["merged_rows"]

    relinked = {key for key in set(old) & set(new) if old[key][LOOKUP] != new[key][LOOKUP]}
    assert len(relinked) == counts["moved"] + counts["merged_rows"]
    for key in relinked:
        assert new[key]["msdynci_customerid"] == after["profiles"][new[key][LOOKUP]]["msdynci_customerid"]

    added = [new[key] for key in set(new) - set(old)]
    assert len(added) == counts["mapped_existing"] + counts["mapped_new"]
    previously_named = {
        r["msdynci_alternatevalue"].lower() for r in old.values() if r["msdynci_entityname"] == "contact"
    }
    existing = [r for r in added if r["msdynci_alternatevalue"] in before["contacts"]]
    created = [r for r in added if r["msdynci_alternatevalue"] not in before["contacts"]]
    assert len(existing) == counts["mapped_existing"]
    assert all(r["msdynci_alternatevalue"] not in previously_named for r in existing)
    assert len(created) == counts["mapped_new"]
    assert {r["msdynci_alternatevalue"] for r in created} == set(after["contacts"]) - set(before["contacts"])
    assert all(
        (r["msdynci_datasourcename"], r["msdynci_entityname"]) == ("DataverseSales", "contact")
        and r["msdynci_identifier"] == f"DataverseSales|contact|{r['msdynci_alternatevalue']}"
        for r in added
    )

    finished = emulator.now()
    for key in set(old) & set(new):
        if key in relinked:
            assert started <= micros(new[key]["modifiedon"]) <= finished
        else:
            assert new[key] == old[key], "an unchanged row keeps its values and modifiedon"
    assert all(started <= micros(r["modifiedon"]) <= finished for r in added)


def test_reunify_is_deterministic(emulator: EmulatorClient, api: WebApi) -> None:
    first = emulator.reunify(0.05, seed=9)
    first_scene = without_times(scene(api))
    emulator.reset(contacts=300, leads=150, seed=7)
    second = emulator.reunify(0.05, seed=9)
    assert second == first
    assert without_times(scene(api)) == first_scene
    emulator.reset(contacts=300, leads=150, seed=7)
    emulator.reunify(0.05, seed=10)
    assert without_times(scene(api))["mappings"] != first_scene["mappings"]


def test_deferred_profiles_leave_rows_pending_until_published(emulator: EmulatorClient, api: WebApi) -> None:
    counts = emulator.reunify(0.02, seed=5, defer_profiles=True)
    assert counts["deferred_profiles"] == counts["new_profiles"] >= 1
    data = scene(api)
    dangling = {r[LOOKUP] for r in data["mappings"].values() if r[LOOKUP] not in data["profiles"]}
    assert len(dangling) == counts["deferred_profiles"]
    waiting = {r["msdynci_alternatevalue"] for r in data["mappings"].values() if r[LOOKUP] in dangling}
    truth = emulator.links("contact", rows="all")
    pending = {r["id"] for r in truth["rows"] if r["outcome"] == "pending"}
    assert pending == waiting
    assert truth["summary"]["pending"] == len(waiting)
    assert all(r["expected"] is None for r in truth["rows"] if r["id"] in pending)

    assert emulator.publish_deferred() == counts["deferred_profiles"]
    profiles = by_key(read_all(api, "msdynci_customerprofiles", PROFILE_SELECT), "msdynci_customerprofileid")
    assert dangling <= set(profiles)
    truth = emulator.links("contact", rows="all")
    assert truth["summary"]["pending"] == 0
    assert {r["id"]: r["expected"] for r in truth["rows"] if r["id"] in waiting} == {
        r["msdynci_alternatevalue"]: r[LOOKUP] for r in data["mappings"].values() if r[LOOKUP] in dangling
    }
    assert emulator.publish_deferred() == 0


def test_spread_puts_changes_in_the_recent_past(emulator: EmulatorClient, api: WebApi) -> None:
    counts, before, after, started = reunify_and_compare(
        emulator, api, fraction=0.1, seed=3, spread_seconds=3600
    )
    old, new = before["mappings"], after["mappings"]
    changed = [r for k, r in new.items() if k not in old or old[k]["modifiedon"] != r["modifiedon"]]
    assert (
        len(changed)
        == counts["moved"] + counts["merged_rows"] + counts["mapped_existing"] + counts["mapped_new"]
    )
    stamps = sorted(micros(r["modifiedon"]) for r in changed)
    finished = emulator.now()
    assert started - 3_600_000_000 <= stamps[0]
    assert stamps[-1] <= finished
    assert stamps[0] < started - 600_000_000, "spread over the hour, not bunched at now"
    assert len(set(stamps)) > len(stamps) // 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fraction": 0}, "'fraction' must be a number in (0, 1]"),
        ({"fraction": 1.5}, "'fraction' must be a number in (0, 1]"),
        ({"fraction": -0.1}, "'fraction' must be a number in (0, 1]"),
        ({"fraction": "0.1"}, "'fraction' must be a number in (0, 1]"),
        ({"fraction": True}, "'fraction' must be a number in (0, 1]"),
        ({"fraction": 0.1, "seed": -1}, "'seed' must be an integer >= 0"),
        ({"fraction": 0.1, "spread_seconds": -5}, "'spread_seconds' must be a number from 0 to 3153600000"),
        ({"fraction": 0.1, "defer_profiles": "yes"}, "'defer_profiles' must be true or false"),
        (
            {"fraction": 0.1, "fractoin": 0.2},
            "unknown field 'fractoin'; known: fraction, seed, defer_profiles, spread_seconds",
        ),
    ],
)
def test_reunify_refuses_bad_parameters_and_changes_nothing(
    emulator: EmulatorClient, api: WebApi, body: dict[str, Any], message: str
) -> None:
    before = without_times(scene(api))
    response = requests.post(f"{emulator.base_url}/_emulator/reunify", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert without_times(scene(api)) == before


def orphaned(data: dict[str, dict[str, dict[str, Any]]], entity: str, rows: str) -> list[dict[str, Any]]:
    """The Sales mapping rows of a table whose GUID value names no row of it."""
    return [
        m
        for m in data["mappings"].values()
        if (m["msdynci_datasourcename"], m["msdynci_entityname"]) == ("DataverseSales", entity)
        and GUID.match(m["msdynci_alternatevalue"].lower())
        and m["msdynci_alternatevalue"].lower() not in data[rows]
    ]


@pytest.mark.parametrize("share", [0.0, 0.15, 0.4])
def test_orphans_delete_a_share_of_a_tables_mapped_rows_and_keep_their_mapping(
    emulator: EmulatorClient, api: WebApi, share: float
) -> None:
    plain = scene(api)
    assert not orphaned(plain, "lead", "leads")  # the standard scene names only leads that exist
    lead_rows = [m for m in plain["mappings"].values() if m["msdynci_entityname"] == "lead"]
    seeded = emulator.reset(contacts=300, leads=150, seed=7, orphans={"lead": share})["seeded"]
    data = scene(api)
    assert data["mappings"].keys() == plain["mappings"].keys()  # the mapping rows stay behind
    assert data["contacts"].keys() == plain["contacts"].keys()  # other tables are untouched
    lost = orphaned(data, "lead", "leads")
    assert seeded["orphaned_lead"] == len(lost) == len(plain["leads"]) - len(data["leads"])
    assert len(lost) == round(share * len(lead_rows))


def test_orphans_are_the_same_rows_for_the_same_seed(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=100, leads=60, seed=3, orphans={"lead": 0.3, "contact": 0.1})
    first = scene(api)
    emulator.reset(contacts=100, leads=60, seed=3, orphans={"lead": 0.3, "contact": 0.1})
    assert scene(api)["leads"].keys() == first["leads"].keys()
    assert scene(api)["contacts"].keys() == first["contacts"].keys()
    emulator.reset(contacts=100, leads=60, seed=3)
    assert len(scene(api)["leads"]) == 60  # a reset without orphans deletes nothing


@pytest.mark.parametrize(
    ("orphans", "expected"),
    [
        ({"account": 0.1}, "only contact, lead can be orphaned"),
        ({"lead": 1.5}, "must be a number from 0 to 1"),
        ({"lead": True}, "must be a number from 0 to 1"),
    ],
)
def test_orphans_out_of_range_are_refused(
    emulator: EmulatorClient, orphans: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ControlCallError, match=expected):
        emulator.reset(contacts=10, leads=5, seed=1, orphans=orphans)
