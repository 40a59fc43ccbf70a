"""The control API under ``/_emulator/``: the truth about links, modes, reset, stats, sources and clock.

The truth (``links``) is what every hydration test ends on, so it is checked against a recomputation
from the raw mapping rows read through the Web API, with the documented rule implemented here on its
own: newest ``modifiedon`` among the Dataverse data sources' rows for the table wins, ties by the larger
``msdynci_alternatekeyid``; a winner whose profile does not exist leaves the row pending.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi
from tests.emulator.lookups import create_lookup

LOOKUP_SCHEMA = "new_CustomerProfile"
LOOKUP_LOGICAL = "new_customerprofile"
DATAVERSE_SOURCES = {"contact": ("DataverseSales", "DataverseMarketing"), "lead": ("DataverseSales",)}
CASCADES = ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")
DEFAULT_MODES = {
    "profile_partitions": "none",
    "bind_without_partition": "not_found",
    "elastic_read_lag_seconds": 0.0,
    "paging": "keyset",
    "modifiedon_precision": "hidden-millisecond",
    "cid_lookup": "absent",
    "cid_lookup_navigation_property": "msdynci_lookupfield_customerprofile",
    "update_multiple": {"contact": True, "lead": True, "msdynci_customerprofile": True},
    "bind_null": "ignored",
    "metadata_delay_seconds": 0.0,
    "dop_hint": 4,
    "users": None,
    "privileges": {},
    "short_pages": None,
}


@pytest.fixture
def bare(emulator_server: EmulatorServer) -> EmulatorClient:
    """The control client without a reset, for requests that must change nothing (faster than a reset)."""
    return EmulatorClient(emulator_server.base_url)


def control(emulator: EmulatorClient, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A raw control request, to see statuses and error bodies."""
    return requests.request(method, f"{emulator.base_url}/_emulator/{path}", timeout=60, **kwargs)


def read_all(api: WebApi, entity_set: str, select: str, page: int = 500) -> list[dict[str, Any]]:
    """Every row of a table, following ``@odata.nextLink``."""
    rows: list[dict[str, Any]] = []
    url: str | None = f"{entity_set}?$select={select}"
    while url:
        response = api.get(url, headers={"Prefer": f"odata.maxpagesize={page}"})
        assert response.status_code == 200, response.text
        rows += response.json()["value"]
        url = response.json().get("@odata.nextLink")
    return rows


def bind(api: WebApi, entity_set: str, key: str, profile: str, partition: str | None = None) -> None:
    """Write one row's link, naming the profile's partition when it has one."""
    if partition is None:
        target = f"msdynci_customerprofiles({profile})"
    else:
        target = f"msdynci_customerprofiles(msdynci_customerprofileid={profile},partitionid='{partition}')"
    response = api.patch(
        f"{entity_set}({key})", json={f"{LOOKUP_SCHEMA}@odata.bind": target}, headers={"If-Match": "*"}
    )
    assert response.status_code == 204, response.text


def link_everything(emulator: EmulatorClient, api: WebApi, table: str = "contact") -> dict[str, Any]:
    """Write every expected link of ``table``; return the truth afterwards."""
    entity_set = f"{table}s"
    for row in emulator.links(table, rows="all")["rows"]:
        if row["expected"] is not None:
            bind(api, entity_set, row["id"], row["expected"], row["expected_partition"])
    return emulator.links(table, rows="all")


def recompute(api: WebApi, table: str) -> dict[str, str]:
    """Each row's outcome from the raw data read through the Web API (the documented rule)."""
    sources = DATAVERSE_SOURCES[table]
    mappings = [
        r
        for r in read_all(
            api,
            "msdynci_alternatekeys",
            "msdynci_alternatekeyid,msdynci_datasourcename,msdynci_entityname,msdynci_alternatevalue,"
            "_msdynci_lookupfield_customer_value,modifiedon",
        )
        if r["msdynci_entityname"] == table and r["msdynci_datasourcename"] in sources
    ]
    winners: dict[str, dict[str, Any]] = {}
    for row in mappings:
        key = row["msdynci_alternatevalue"].lower()
        rank = (row["modifiedon"], row["msdynci_alternatekeyid"])
        if key not in winners or rank > (winners[key]["modifiedon"], winners[key]["msdynci_alternatekeyid"]):
            winners[key] = row
    profiles = {
        p["msdynci_customerprofileid"]
        for p in read_all(api, "msdynci_customerprofiles", "msdynci_customerprofileid")
    }
    outcomes = {}
    for row in read_all(api, f"{table}s", f"{table}id,_{LOOKUP_LOGICAL}_value"):
        current = row[f"_{LOOKUP_LOGICAL}_value"]
        winner = winners.get(row[f"{table}id"])
        expected = winner["_msdynci_lookupfield_customer_value"] if winner else None
        if expected is not None and expected not in profiles:
            outcomes[row[f"{table}id"]] = "pending"
        elif expected == current:
            outcomes[row[f"{table}id"]] = "correct"
        elif current is None:
            outcomes[row[f"{table}id"]] = "missing"
        else:
            outcomes[row[f"{table}id"]] = "stale" if expected is None else "wrong"
    return outcomes


def summary_of(outcomes: dict[str, str], expected_links: int) -> dict[str, int]:
    counts = Counter(outcomes.values())
    names = ("correct", "missing", "wrong", "stale", "pending", "partition_mismatch")
    return {"rows": len(outcomes), "expected_links": expected_links, **{n: counts.get(n, 0) for n in names}}


# -- the truth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "rows"), [("contact", 300), ("lead", 150)])
def test_before_any_link_every_expected_link_is_missing(
    emulator: EmulatorClient, table: str, rows: int
) -> None:
    truth = emulator.links(table, rows="none")
    summary = truth["summary"]
    assert truth["table"] == table
    assert truth["lookup"] is None
    assert truth["navigation_property"] is None
    assert truth["rows"] == []
    assert summary["rows"] == rows
    assert 0.85 * rows < summary["expected_links"] < rows
    assert summary["missing"] == summary["expected_links"]
    assert summary["correct"] == rows - summary["expected_links"]
    assert summary["wrong"] == summary["stale"] == summary["pending"] == summary["partition_mismatch"] == 0


def test_links_become_correct_then_reunify_makes_them_wrong_stale_and_missing(
    emulator: EmulatorClient, api: WebApi
) -> None:
    create_lookup(api)
    before = emulator.links("contact", rows="none")
    assert before["lookup"] == LOOKUP_LOGICAL
    assert before["navigation_property"] == LOOKUP_SCHEMA
    assert before["summary"]["missing"] == before["summary"]["expected_links"] > 250

    linked = link_everything(emulator, api)
    summary = linked["summary"]
    assert summary["correct"] == summary["rows"] == 300
    assert summary["missing"] == summary["wrong"] == summary["stale"] == summary["pending"] == 0
    assert {r["outcome"] for r in linked["rows"]} == {"correct"}
    assert emulator.links("contact")["rows"] == []

    emulator.modes(modifiedon_precision="millisecond")
    changes = emulator.reunify(0.05, seed=5)
    assert changes["moved"]
    assert changes["deleted"]
    assert changes["merged_rows"]
    outcomes = recompute(api, "contact")
    truth = emulator.links("contact", rows="all")
    assert {r["id"]: r["outcome"] for r in truth["rows"]} == outcomes
    assert truth["summary"] == summary_of(outcomes, truth["summary"]["expected_links"])
    assert truth["summary"]["expected_links"] == sum(1 for r in truth["rows"] if r["expected"] is not None)
    for outcome in ("wrong", "stale", "missing"):
        assert truth["summary"][outcome] >= 1, outcome

    wrong = emulator.links("contact", rows="wrong")
    assert wrong["summary"] == truth["summary"]
    assert {r["id"]: r["outcome"] for r in wrong["rows"]} == {
        k: v for k, v in outcomes.items() if v in ("missing", "wrong", "stale")
    }
    assert emulator.links("contact", rows="none")["rows"] == []


def test_pending_rows_follow_the_raw_data_rule(emulator: EmulatorClient, api: WebApi) -> None:
    create_lookup(api)
    link_everything(emulator, api)
    emulator.modes(modifiedon_precision="millisecond")
    changes = emulator.reunify(0.05, seed=5, defer_profiles=True)
    assert changes["deferred_profiles"] >= 1
    outcomes = recompute(api, "contact")
    truth = emulator.links("contact", rows="all")
    assert {r["id"]: r["outcome"] for r in truth["rows"]} == outcomes
    assert truth["summary"]["pending"] == sum(1 for v in outcomes.values() if v == "pending") >= 1
    emulator.publish_deferred()
    outcomes = recompute(api, "contact")
    assert "pending" not in outcomes.values()
    assert {r["id"]: r["outcome"] for r in emulator.links("contact", rows="all")["rows"]} == outcomes


def test_leads_are_linked_from_their_own_data_source(emulator: EmulatorClient, api: WebApi) -> None:
    create_lookup(api, "lead")
    linked = link_everything(emulator, api, "lead")
    assert linked["summary"]["correct"] == linked["summary"]["rows"] == 150
    emulator.modes(modifiedon_precision="millisecond")
    emulator.reunify(0.1, seed=2)
    outcomes = recompute(api, "lead")
    truth = emulator.links("lead", rows="all")
    assert {r["id"]: r["outcome"] for r in truth["rows"]} == outcomes
    assert set(outcomes.values()) - {"correct"}, "re-unification reached the leads"


def test_a_bind_without_the_partition_id_is_a_partition_mismatch(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.reset(
        contacts=40,
        leads=0,
        seed=3,
        modes={"profile_partitions": "custom", "bind_without_partition": "dangling"},
    )
    create_lookup(api)
    rows = [r for r in emulator.links("contact", rows="all")["rows"] if r["expected"]]
    first, second = rows[0], rows[1]
    assert first["expected_partition"]
    bind(api, "contacts", first["id"], first["expected"], first["expected_partition"])
    bind(api, "contacts", second["id"], second["expected"])
    truth = {r["id"]: r for r in emulator.links("contact", rows="all")["rows"]}
    assert truth[first["id"]]["outcome"] == "correct"
    assert truth[first["id"]]["current_partition"] == first["expected_partition"]
    assert truth[second["id"]]["outcome"] == "partition_mismatch"
    assert truth[second["id"]]["current"] == second["expected"]
    assert truth[second["id"]]["current_partition"] is None
    wrong = emulator.links("contact")
    assert wrong["summary"]["partition_mismatch"] == 1
    assert second["id"] in {r["id"] for r in wrong["rows"]}


def test_the_lookup_parameter_chooses_among_several_lookups(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=50, leads=10, seed=2, modes={"cid_lookup": "present"})
    only_cid = emulator.links("contact", rows="none")
    assert only_cid["lookup"] == "msdynci_lookupfield_customerprofile"
    assert only_cid["navigation_property"] == "msdynci_lookupfield_customerprofile"

    create_lookup(api)
    link_everything_named = emulator.links("contact", rows="all", lookup=LOOKUP_LOGICAL)
    assert link_everything_named["lookup"] == LOOKUP_LOGICAL
    for row in link_everything_named["rows"]:
        if row["expected"]:
            bind(api, "contacts", row["id"], row["expected"])
    ours = emulator.links("contact", rows="none", lookup="New_CustomerProfile")
    assert ours["lookup"] == LOOKUP_LOGICAL
    assert ours["summary"]["correct"] == ours["summary"]["rows"] == 50
    theirs = emulator.links("contact", rows="none", lookup="msdynci_lookupfield_customerprofile")
    assert theirs["summary"]["missing"] == theirs["summary"]["expected_links"] > 0

    ambiguous = control(emulator, "GET", "links", params={"table": "contact"})
    assert ambiguous.status_code == 400
    assert ambiguous.json() == {
        "error": "contact has several lookups to msdynci_customerprofile "
        "(msdynci_lookupfield_customerprofile, new_customerprofile): name one"
    }
    unknown = control(emulator, "GET", "links", params={"table": "contact", "lookup": "new_nothing"})
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "contact has no lookup 'new_nothing' to msdynci_customerprofile "
        "(it has msdynci_lookupfield_customerprofile, new_customerprofile)"
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"table": "account"}, "'table' must be contact or lead"),
        ({}, "'table' must be contact or lead"),
        ({"table": "contact", "rows": "some"}, "'rows' must be all, wrong or none"),
        (
            {"table": "contact", "lookup": "new_x"},
            "contact has no lookup 'new_x' to msdynci_customerprofile (it has none)",
        ),
    ],
)
def test_links_refuses_bad_parameters(bare: EmulatorClient, params: dict[str, str], message: str) -> None:
    bare.reset(contacts=5, leads=0)
    response = control(bare, "GET", "links", params=params)
    assert response.status_code == 400
    assert response.json() == {"error": message}


# -- health, modes, reset -----------------------------------------------------------------------------


def test_health(bare: EmulatorClient) -> None:
    response = control(bare, "GET", "health")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_modes_read_and_change_live(emulator: EmulatorClient, api: WebApi) -> None:
    assert emulator.modes() == DEFAULT_MODES
    assert api.get("WhoAmI").headers["x-ms-dop-hint"] == "4"
    changed = emulator.modes(paging="offset", dop_hint=8)
    assert changed == {**DEFAULT_MODES, "paging": "offset", "dop_hint": 8}
    assert emulator.modes() == changed
    assert api.get("WhoAmI").headers["x-ms-dop-hint"] == "8"
    response = control(emulator, "PATCH", "modes", json={})
    assert response.status_code == 200
    assert response.json() == changed


def test_update_multiple_mode_is_answered_by_sdkmessagefilters(emulator: EmulatorClient, api: WebApi) -> None:
    query = (
        "sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq 'UpdateMultiple' "
        "and primaryobjecttypecode eq 'contact'"
    )
    assert len(api.get(query).json()["value"]) == 1
    emulator.modes(update_multiple={"contact": False, "lead": True})
    assert api.get(query).json()["value"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pagin": "offset"}, "unknown mode 'pagin'; known: "),
        ({"paging": "offset", "dop_hint": 0}, "mode 'dop_hint' must be an integer >= 1"),
        ({"paging": "sideways"}, "mode 'paging' must be one of keyset, offset, snapshot"),
        (
            {"elastic_read_lag_seconds": -1},
            "mode 'elastic_read_lag_seconds' must be a number of seconds >= 0",
        ),
        ({"users": "hydration-app"}, "mode 'users' must be null or a list of user names"),
        (
            {"profile_partitions": "custom"},
            "mode 'profile_partitions' shapes the seeded data: pass it to reset instead",
        ),
        ({"cid_lookup": "present"}, "mode 'cid_lookup' shapes the seeded data: pass it to reset instead"),
    ],
)
def test_bad_mode_changes_are_refused_and_change_nothing(
    bare: EmulatorClient, body: dict[str, Any], message: str
) -> None:
    before = bare.modes()
    response = control(bare, "PATCH", "modes", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert bare.modes() == before


def test_unknown_mode_message_lists_the_known_modes(bare: EmulatorClient) -> None:
    response = control(bare, "PATCH", "modes", json={"pagin": "offset"})
    assert response.json() == {"error": f"unknown mode 'pagin'; known: {', '.join(sorted(DEFAULT_MODES))}"}


def test_reset_reseeds_with_modes_and_restores_the_other_defaults(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.modes(dop_hint=9, paging="snapshot")
    answer = emulator.reset(
        contacts=20, leads=5, seed=2, modes={"profile_partitions": "custom", "paging": "offset"}
    )
    assert answer["modes"] == {**DEFAULT_MODES, "profile_partitions": "custom", "paging": "offset"}
    assert answer["seeded"]["contacts"] == 20
    assert answer["seeded"]["leads"] == 5
    assert emulator.modes() == answer["modes"]
    assert len(read_all(api, "contacts", "contactid")) == 20
    profiles = read_all(api, "msdynci_customerprofiles", "partitionid")
    assert len(profiles) == answer["seeded"]["profiles"]
    assert all(p["partitionid"] for p in profiles)

    again = control(emulator, "POST", "reset", json={})
    assert again.status_code == 200
    assert again.json()["seeded"] == answer["seeded"], "an empty reset reseeds the same scene"
    assert again.json()["modes"] == DEFAULT_MODES


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contacts": -1}, "'contacts' must be an integer >= 0"),
        ({"contacts": "10"}, "'contacts' must be an integer >= 0"),
        ({"leads": True}, "'leads' must be an integer >= 0"),
        ({"seed": 1.5}, "'seed' must be an integer >= 0"),
        ({"modes": []}, "'modes' must be an object"),
        ({"modes": {"paging": "x"}}, "mode 'paging' must be one of keyset, offset, snapshot"),
        ({"modes": {"nope": 1}}, "unknown mode 'nope'"),
        ({"contact": 5}, "unknown field 'contact'; known: contacts, leads, seed, modes"),
    ],
)
def test_bad_resets_are_refused_and_change_nothing(
    emulator: EmulatorClient, api: WebApi, body: dict[str, Any], message: str
) -> None:
    emulator.modes(dop_hint=6)
    response = control(emulator, "POST", "reset", json={"contacts": 10, **body})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert emulator.modes() == {**DEFAULT_MODES, "dop_hint": 6}
    assert len(read_all(api, "contacts", "contactid")) == 300


def test_the_control_client_raises_with_status_and_message(bare: EmulatorClient) -> None:
    with pytest.raises(ControlCallError, match=r"^'fraction' must be a number in \(0, 1\]$") as caught:
        bare.reunify(2)
    assert caught.value.status == 400


# -- stats, sources, clock ----------------------------------------------------------------------------


def test_stats_count_requests_rows_and_users_until_reset(emulator: EmulatorClient, api: WebApi) -> None:
    empty = {
        "requests": {},
        "requests_total": 0,
        "operations": {},
        "statuses": {},
        "rows_read": {},
        "rows_written": {},
        "per_user": {},
    }
    assert emulator.stats() == empty, "a reset zeroes the counters"
    assert api.get("contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=7"}).status_code == 200
    assert api.get("WhoAmI").status_code == 200
    contact = api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"]
    assert (
        api.patch(f"contacts({contact})", json={"firstname": "Zoe"}, headers={"If-Match": "*"}).status_code
        == 204
    )
    assert emulator.web_api("other-user").get("leads?$top=3").status_code == 200
    assert requests.get(f"{emulator.base_url}/api/data/v9.2/WhoAmI", timeout=10).status_code == 401
    stats = emulator.stats()
    assert stats["requests"] == {"query": 3, "whoami": 1, "update": 1, "unauthenticated": 1}
    assert stats["requests_total"] == 6
    assert stats["statuses"] == {"200": 4, "204": 1, "401": 1}
    assert stats["rows_read"] == {"contact": 8, "lead": 3}
    assert stats["rows_written"] == {"contact": 1}
    assert stats["per_user"]["hydration-app"] == {"requests": 4, "rows_read": 8, "rows_written": 1}
    assert stats["per_user"]["other-user"] == {"requests": 1, "rows_read": 3}

    reset = control(emulator, "POST", "stats/reset")
    assert reset.status_code == 200
    assert reset.json() == empty
    assert emulator.stats() == empty


def test_sources_name_the_seeded_data_sources(bare: EmulatorClient) -> None:
    response = control(bare, "GET", "sources")
    assert response.status_code == 200
    assert response.json() == {
        "sources": [
            {"datasource": "DataverseSales", "entity": "contact", "table": "contact", "dataverse": True},
            {"datasource": "DataverseSales", "entity": "lead", "table": "lead", "dataverse": True},
            {"datasource": "DataverseMarketing", "entity": "contact", "table": "contact", "dataverse": True},
            {"datasource": "LoyaltyPlatform", "entity": "Members", "table": None, "dataverse": False},
        ]
    }


def test_the_clock_moves_server_time_the_date_header_and_modifiedon(
    emulator: EmulatorClient, api: WebApi
) -> None:
    now = control(emulator, "GET", "clock").json()
    assert now["now"].endswith("Z")
    start = now["now_micros"]
    day = 86_400
    moved = emulator.advance_clock(day)
    assert start + day * 1_000_000 <= moved < start + (day + 30) * 1_000_000
    answer = control(emulator, "GET", "clock").json()
    assert moved <= answer["now_micros"] < moved + 30_000_000

    response = api.get("WhoAmI")
    served_at = parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert abs(served_at - moved / 1_000_000) < 30

    emulator.modes(modifiedon_precision="millisecond")
    contact = api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"]
    api.patch(f"contacts({contact})", json={"firstname": "Ada"}, headers={"If-Match": "*"})
    stamp = api.get(f"contacts({contact})?$select=modifiedon").json()["modifiedon"]
    written = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    assert abs(written - moved / 1_000_000) < 30
    assert emulator.advance_clock(0) >= answer["now_micros"]


@pytest.mark.parametrize("seconds", [-1, "60", True, None, 1e300, math.inf, math.nan])
def test_the_clock_refuses_bad_steps(bare: EmulatorClient, seconds: object) -> None:
    before = bare.now()
    response = control(
        bare,
        "POST",
        "clock",
        data=f'{{"advance_seconds": {json_literal(seconds)}}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "'advance_seconds' must be a number from 0 to 3153600000"}
    assert bare.now() < before + 30_000_000


def json_literal(value: object) -> str:
    """A JSON token, including the NaN and Infinity Python's JSON reader accepts."""
    return json.dumps(value)


def test_unknown_operations_answer_404(bare: EmulatorClient) -> None:
    for method, path in (("GET", "nope"), ("GET", "reset"), ("DELETE", "modes"), ("GET", "stats/reset")):
        response = control(bare, method, path)
        assert response.status_code == 404
        assert response.json() == {"error": f"no control operation {method} /_emulator/{path}"}


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PATCH", "modes", b"{not json", "the body is not JSON: "),
        ("PATCH", "modes", b"\xff\xfe\x00", "the body is not JSON: "),
        ("PATCH", "modes", b"[1, 2]", "the body must be a JSON object"),
        ("PATCH", "modes", b'"text"', "the body must be a JSON object"),
        ("POST", "reset", b"{not json", "the body is not JSON: "),
        ("POST", "reset", b"[]", "the body must be a JSON object"),
        ("POST", "clock", b"{not json", "the body is not JSON: "),
        ("POST", "clock", b"7", "the body must be a JSON object"),
        ("POST", "reunify", b"{not json", "the body is not JSON: "),
        ("POST", "reunify", b"null", "the body must be a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    bare: EmulatorClient, method: str, path: str, body: bytes, message: str
) -> None:
    modes, clock = bare.modes(), bare.now()
    response = control(bare, method, path, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert bare.modes() == modes
    assert bare.now() < clock + 30_000_000
