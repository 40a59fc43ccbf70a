"""Key-ordered pages of a wide ``modifiedon`` window: the emulator walks the key index, same answers.

An incremental pass whose window holds most of the mapping used to cost the emulator a sort of the
whole window on every page (docs/emulator-scale.md). These tests check the plan choice directly on the
store, and over HTTP that paging through such a window, as the product does (key after the last
page's), returns exactly the rows and order of a pass that reads every row.
"""

from __future__ import annotations

from typing import Any

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi
from dataverse_emulator.query import Plan, walk_the_key
from dataverse_emulator.store import quote

MAPPING = "msdynci_alternatekey"
KEY = "msdynci_alternatekeyid"
SOURCES = "(msdynci_datasourcename eq 'DataverseSales' or msdynci_datasourcename eq 'DataverseMarketing')"


def plan(server: EmulatorServer, order: str = KEY) -> Plan:
    entity = server.org.entity(MAPPING)
    return Plan(entity, [], "", [], [(order, False)], "test")


def window(low: int, high: int) -> tuple[str, list[Any]]:
    return f"{quote('modifiedon')} >= ? AND {quote('modifiedon')} < ?", [low, high]


def test_a_wide_two_sided_window_walks_the_key_and_a_narrow_one_keeps_sqlites_plan(
    emulator_server: EmulatorServer, emulator: EmulatorClient
) -> None:
    emulator.reset(contacts=2000, leads=0, seed=3)
    org = emulator_server.org
    rows = org.store.fetch(f"SELECT min(modifiedon) AS low, max(modifiedon) AS high FROM {quote(MAPPING)}")
    low, high = int(rows[0]["low"]), int(rows[0]["high"]) + 1
    where, params = window(low, high)
    assert walk_the_key(org, plan(emulator_server), where, params, wide=500)
    assert not walk_the_key(org, plan(emulator_server), where, params, wide=10**9)  # not wide enough
    where, params = window(high, high + 1)
    assert not walk_the_key(org, plan(emulator_server), where, params, wide=500)  # narrow: no rows
    one_sided = (f"{quote('modifiedon')} < ?", [high])
    assert not walk_the_key(org, plan(emulator_server), *one_sided, wide=500)  # SQLite walks the key itself
    where, params = window(low, high)
    assert not walk_the_key(org, plan(emulator_server, order="modifiedon"), where, params, wide=500)


def pages(api: WebApi, terms: list[str], size: int) -> list[str]:
    """Every key the product's paging returns: key-bounded pages, ordered by key."""
    keys: list[str] = []
    while True:
        bound = [f"{KEY} gt {keys[-1]}"] if keys else []
        response = api.get(
            "msdynci_alternatekeys",
            params={"$select": KEY, "$filter": " and ".join(terms + bound), "$orderby": f"{KEY} asc"},
            headers={"Prefer": f"odata.maxpagesize={size}"},
        )
        assert response.status_code == 200, response.text
        found = [r[KEY] for r in response.json()["value"]]
        keys += found
        if len(found) < size:
            return keys


def test_paging_a_wide_window_returns_every_row_once_in_key_order(
    emulator_server: EmulatorServer, emulator: EmulatorClient
) -> None:
    emulator.reset(contacts=25000, leads=0, seed=3)
    with emulator.web_api("hydration-app") as api:
        everything = pages(api, [SOURCES, "modifiedon lt 2100-01-01T00:00:00Z"], 5000)
        assert len(everything) >= 20000  # more than the emulator's threshold: the key is walked
        wide = pages(
            api, [SOURCES, "modifiedon ge 2000-01-01T00:00:00Z", "modifiedon lt 2100-01-01T00:00:00Z"], 5000
        )
    assert wide == everything
    assert everything == sorted(everything)
    assert len(set(everything)) == len(everything)
