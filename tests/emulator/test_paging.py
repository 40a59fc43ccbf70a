"""Paging of collection queries over HTTP: page sizes, next links, skip tokens and the ``paging`` modes.

The ``paging`` modes decide what a next page returns when rows change between page fetches; each test
here changes rows between fetches and names the exact rows that repeat or go missing.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import requests

from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi

from .test_batch_api import parse, part, post_batch, single

INVALID = "0x80060888"
COOKIE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([^"]+)" istracking="False" />$')
BAD_TOKEN = "The $skiptoken is not valid for this query."
ORDERED = "contacts?$select=fullname,modifiedon&$filter=statecode eq 0&$orderby=modifiedon asc,contactid asc"
LOOKUP = "_msdynci_lookupfield_customer_value"


def page_size(size: int) -> dict[str, str]:
    return {"Prefer": f"odata.maxpagesize={size}"}


def get(api: WebApi, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = api.get(url, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pages(api: WebApi, url: str, size: int) -> list[list[dict[str, Any]]]:
    """Every page of a query, following next links unchanged with the same page size."""
    found = []
    next_url: str | None = url
    while next_url:
        response = api.get(next_url, headers=page_size(size))
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == f"odata.maxpagesize={size}"
        body = response.json()
        found.append(body["value"])
        next_url = body.get("@odata.nextLink")
    return found


def keys(found: list[dict[str, Any]], key: str = "contactid") -> list[str]:
    return [r[key] for r in found]


def flat(found: list[list[dict[str, Any]]], key: str = "contactid") -> list[str]:
    return [r[key] for page in found for r in page]


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["$skiptoken"][0]


def with_token(link: str, token: str) -> str:
    return link.split("$skiptoken=")[0] + "$skiptoken=" + quote(token, safe="")


def assert_bad_token(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"error": {"code": INVALID, "message": BAD_TOKEN}}


# -- page sizes and next links ---------------------------------------------------------------------------


def test_default_page_size_is_5000_and_larger_preferences_are_ignored(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.reset(contacts=6000, leads=0, seed=7)
    first = api.get("contacts?$select=fullname")
    assert first.status_code == 200
    assert "Preference-Applied" not in first.headers
    body = first.json()
    assert len(body["value"]) == 5000
    second = api.get(body["@odata.nextLink"])
    assert "Preference-Applied" not in second.headers
    rest = second.json()
    assert len(rest["value"]) == 1000
    assert "@odata.nextLink" not in rest
    every = keys(body["value"]) + keys(rest["value"])
    assert every == sorted(set(every))
    assert len(every) == 6000

    too_big = api.get("contacts?$select=fullname", headers=page_size(6000))
    assert too_big.status_code == 200
    assert "Preference-Applied" not in too_big.headers
    assert keys(too_big.json()["value"]) == every[:5000]
    exact = api.get("contacts?$select=fullname", headers=page_size(5000))
    assert exact.headers["Preference-Applied"] == "odata.maxpagesize=5000"
    assert keys(exact.json()["value"]) == every[:5000]


def test_maxpagesize_pages_and_next_link_shape(api: WebApi) -> None:
    url = "contacts?$select=fullname&$filter=statecode eq 0"
    response = api.get(url, headers=page_size(100))
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=100"
    body = response.json()
    assert body["@odata.context"] == f"{api.api_url}$metadata#contacts(fullname)"
    assert len(body["value"]) == 100
    link = body["@odata.nextLink"]
    prefix = (
        f"{api.api_url}contacts?$select=fullname&$filter=statecode%20eq%200"
        "&$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22"
    )
    assert link.startswith(prefix), link
    assert link.endswith("%22%20istracking=%22False%22%20/%3E")
    assert urlsplit(link).netloc == urlsplit(api.api_url).netloc
    options = parse_qs(urlsplit(link).query)
    assert options["$select"] == ["fullname"]
    assert options["$filter"] == ["statecode eq 0"]
    match = COOKIE.match(token_of(link))
    assert match
    assert match.group(1) == "2"

    second = get(api, link, page_size(100))
    third_link = second["@odata.nextLink"]
    cookie = COOKIE.match(token_of(third_link))
    assert cookie
    assert cookie.group(1) == "3"
    third = get(api, third_link, page_size(100))
    assert len(third["value"]) == 100
    assert "@odata.nextLink" not in third
    everything = get(api, url)["value"]
    assert keys(body["value"]) + keys(second["value"]) + keys(third["value"]) == keys(everything)


def test_page_boundaries_keep_the_order_with_ties_and_nulls(api: WebApi) -> None:
    """Paged results equal the one-page result for orders with many ties and with null sort values."""
    for n in range(12):
        # no first or last name: fullname, which Dataverse composes from them, stays null
        created = api.post("contacts", json={"emailaddress1": f"nameless{n % 3}@example.com"})
        assert created.status_code == 204
    for order in (
        "fullname asc",
        "fullname desc",
        "lastname desc,firstname asc",
        "firstname,modifiedon desc",
    ):
        url = f"contacts?$select=fullname,firstname,lastname,modifiedon&$orderby={order}"
        whole = get(api, url)["value"]
        assert len(whole) == 312
        paged = pages(api, url, 7)
        assert len(paged) == 45
        assert all(len(page) == 7 for page in paged[:-1])
        assert flat(paged) == keys(whole), order
    nulls_first = get(api, "contacts?$select=fullname&$orderby=fullname asc")["value"]
    assert [r["fullname"] for r in nulls_first[:12]] == [None] * 12
    assert nulls_first[12]["fullname"] is not None
    nulls_last = get(api, "contacts?$select=fullname&$orderby=fullname desc")["value"]
    assert [r["fullname"] for r in nulls_last[-12:]] == [None] * 12


def test_top_across_pages_without_maxpagesize(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=5200, leads=0, seed=7)
    first = get(api, "contacts?$select=contactid&$top=5100")
    assert len(first["value"]) == 5000
    second = get(api, first["@odata.nextLink"])
    assert len(second["value"]) == 100
    assert "@odata.nextLink" not in second


# -- skip tokens -----------------------------------------------------------------------------------------


def test_tampered_or_foreign_skiptokens_are_refused(emulator: EmulatorClient, api: WebApi) -> None:
    url = "contacts?$select=fullname&$filter=statecode eq 0"
    link = get(api, url, page_size(100))["@odata.nextLink"]
    token = token_of(link)
    match = COOKIE.match(token)
    assert match
    assert get(api, link, page_size(100))["value"]

    inner = unquote(match.group(2))
    flipped = inner[:5] + ("A" if inner[5] != "A" else "B") + inner[6:]
    assert_bad_token(api.get(with_token(link, token.replace(match.group(2), quote(flipped)))))

    payload, _, signature = inner.rpartition(".")
    state = json.loads(base64.urlsafe_b64decode(payload))
    assert state["page"] == 2
    for change in ({"served": "x"}, {"last": []}, {"mode": "snapshot"}, {"page": 7}):
        forged = base64.urlsafe_b64encode(json.dumps({**state, **change}).encode()).decode()
        edited = token.replace(match.group(2), quote(f"{forged}.{signature}"))
        assert_bad_token(api.get(with_token(link, edited)))

    assert_bad_token(api.get(with_token(link, token.replace('pagenumber="2"', 'pagenumber="3"'))))
    assert_bad_token(api.get(with_token(link, "abc")))
    assert_bad_token(
        api.get(with_token(link, '<cookie pagenumber="2" pagingcookie="x" istracking="False" />'))
    )
    assert_bad_token(api.get(link.replace("statecode%20eq%200", "statecode%20eq%201")))
    assert_bad_token(api.get(link.replace("$select=fullname", "$select=lastname")))
    assert_bad_token(api.get(link.replace("/contacts?", "/leads?")))
    assert_bad_token(api.get(f"{link}&$orderby=fullname"))

    emulator.modes(paging="snapshot")
    assert get(api, link, page_size(100))["value"], "a token keeps the paging mode of its first page"


# -- paging modes ----------------------------------------------------------------------------------------


def first_page_and_order(api: WebApi) -> tuple[dict[str, Any], list[str]]:
    """The first page (100 rows) of the ordered query and the full order before anything changes."""
    order = keys(get(api, ORDERED)["value"])
    assert len(order) == 300
    first = get(api, ORDERED, page_size(100))
    assert keys(first["value"]) == order[:100]
    return first, order


def rest_of(api: WebApi, first: dict[str, Any]) -> list[dict[str, Any]]:
    served = list(first["value"])
    for page in pages(api, first["@odata.nextLink"], 100):
        served.extend(page)
    return served


def touch(api: WebApi, key: str, name: str = "Touched Row") -> None:
    response = api.patch(f"contacts({key})", json={"fullname": name}, headers={"If-Match": "*"})
    assert response.status_code == 204, response.text


def delete(api: WebApi, key: str) -> None:
    assert api.delete(f"contacts({key})").status_code == 204


def repeats(served: list[str]) -> set[str]:
    return {k for k in served if served.count(k) > 1}


def test_keyset_serves_updated_rows_again_and_drops_deleted_ones(
    emulator: EmulatorClient, api: WebApi
) -> None:
    assert emulator.modes()["paging"] == "keyset"
    first, order = first_page_and_order(api)
    updated, deleted = order[10], order[150]
    touch(api, updated)
    delete(api, deleted)
    served = keys(rest_of(api, first))
    assert served == order[:150] + order[151:] + [updated]
    assert repeats(served) == {updated}
    assert deleted not in served


def test_offset_skips_a_row_when_a_served_row_is_deleted(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.modes(paging="offset")
    first, order = first_page_and_order(api)
    delete(api, order[5])
    served = keys(rest_of(api, first))
    assert served == order[:100] + order[101:]
    assert set(order) - set(served) == {order[100]}
    assert repeats(served) == set()


def test_offset_repeats_and_skips_when_a_served_row_moves_later(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.modes(paging="offset")
    first, order = first_page_and_order(api)
    touch(api, order[10])
    served = keys(rest_of(api, first))
    assert served == order[:100] + order[101:] + [order[10]]
    assert set(order) - set(served) == {order[100]}
    assert repeats(served) == {order[10]}


def test_snapshot_keeps_the_first_pages_membership(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.modes(paging="snapshot")
    first, order = first_page_and_order(api)
    touch(api, order[10])
    touch(api, order[150], "Renamed Later")
    gone = {order[5], order[120], order[130], order[199], order[250]}
    for key in gone:
        delete(api, key)
    created = api.post("contacts", json={"fullname": "Arrived Late"})
    assert created.status_code == 204
    served_rows = rest_of(api, first)
    served = keys(served_rows)
    assert served == [k for k in order if k not in gone - {order[5]}]
    assert repeats(served) == set()
    assert next(r for r in served_rows if r["contactid"] == order[150])["fullname"] == "Renamed Later"
    assert len(get(api, ORDERED)["value"]) == 300 - len(gone) + 1


def test_snapshot_single_page_and_concurrent_snapshots(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.modes(paging="snapshot")
    whole = get(api, ORDERED)
    assert "@odata.nextLink" not in whole
    one = get(api, ORDERED, page_size(150))
    two = get(api, ORDERED, page_size(150))
    delete(api, keys(whole["value"])[200])
    rest_two = get(api, two["@odata.nextLink"], page_size(150))
    rest_one = get(api, one["@odata.nextLink"], page_size(150))
    expected = keys(whole["value"])[150:200] + keys(whole["value"])[201:]
    assert keys(rest_one["value"]) == expected
    assert keys(rest_two["value"]) == expected


def test_keyset_over_a_reunification_of_the_mapping(emulator: EmulatorClient, api: WebApi) -> None:
    """Rows CI-D rewrites after they were served come again; rows it deletes before they are served don't."""
    url = (
        f"msdynci_alternatekeys?$select=modifiedon,{LOOKUP}"
        "&$filter=msdynci_datasourcename eq 'DataverseSales'"
        "&$orderby=modifiedon asc,msdynci_alternatekeyid asc"
    )
    key = "msdynci_alternatekeyid"
    before = {r[key]: r for r in get(api, url)["value"]}
    first = get(api, url, page_size(200))
    first_keys = keys(first["value"], key)
    assert len(first_keys) == 200
    emulator.reunify(0.1, seed=3)
    served = first_keys + flat(pages(api, first["@odata.nextLink"], 200), key)
    after_rows = get(api, url)["value"]
    after = keys(after_rows, key)
    changed = {
        r[key]
        for r in after_rows
        if r[key] not in before
        or (r["modifiedon"], r[LOOKUP]) != (before[r[key]]["modifiedon"], before[r[key]][LOOKUP])
    }
    unchanged_first = [k for k in first_keys if k in after and k not in changed]
    assert served == first_keys + [k for k in after if k not in unchanged_first]
    assert repeats(served) == set(first_keys) & changed
    assert repeats(served)
    deleted_unserved = set(before) - set(after) - set(first_keys)
    assert deleted_unserved
    assert not deleted_unserved & set(served)


@pytest.mark.parametrize("mode", ["keyset", "offset", "snapshot"])
def test_unchanged_rows_page_identically_in_every_mode(
    emulator: EmulatorClient, api: WebApi, mode: str
) -> None:
    emulator.modes(paging=mode)
    whole = keys(get(api, ORDERED)["value"])
    assert flat(pages(api, ORDERED, 64)) == whole


def test_snapshot_pages_hide_rows_rewritten_during_the_read_lag(
    emulator: EmulatorClient, api: WebApi
) -> None:
    """A snapshot keeps membership, but rows CI-D rewrites during the lag are absent from later pages."""
    emulator.modes(paging="snapshot", elastic_read_lag_seconds=30)
    url = "msdynci_alternatekeys?$select=modifiedon&$orderby=modifiedon asc,msdynci_alternatekeyid asc"
    key = "msdynci_alternatekeyid"
    before = keys(get(api, url)["value"], key)
    first = get(api, url, page_size(100))
    emulator.reunify(0.1, seed=3)
    seen_by_ci_d = set(keys(get(emulator.web_api("ci-d"), url)["value"], key))
    seen_by_app = set(keys(get(api, url)["value"], key))
    hidden = seen_by_ci_d - seen_by_app
    assert hidden & set(before[100:])
    served = keys(first["value"], key) + flat(pages(api, first["@odata.nextLink"], 100), key)
    assert repeats(served) == set()
    assert served == before[:100] + [k for k in before[100:] if k in seen_by_app]


# -- short pages -----------------------------------------------------------------------------------------


def sizes(found: list[list[dict[str, Any]]]) -> list[int]:
    return [len(page) for page in found]


def assert_short(found: list[list[dict[str, Any]]], size: int) -> None:
    """Every page below ``size``, of at least three sizes, one of them at most a quarter of it."""
    served = sizes(found)
    assert all(1 <= n < size for n in served), served
    assert len(set(served)) >= 3, served
    assert min(served) <= size // 4, served


@pytest.mark.parametrize("mode", ["keyset", "offset", "snapshot"])
def test_short_pages_vary_below_the_page_size_and_serve_every_row_once(
    emulator: EmulatorClient, api: WebApi, mode: str
) -> None:
    assert emulator.modes()["short_pages"] is None
    whole = keys(get(api, ORDERED)["value"])
    emulator.modes(paging=mode, short_pages={"seed": 7})
    found = pages(api, ORDERED, 40)
    assert_short(found, 40)
    assert flat(found) == whole


def test_short_pages_are_reproducible_for_a_seed(emulator: EmulatorClient, api: WebApi) -> None:
    url = "leads?$select=fullname"
    emulator.modes(short_pages=7)
    seven = sizes(pages(api, url, 30))
    assert sum(seven) == 150
    assert max(seven) < 30
    emulator.modes(short_pages={"seed": 7})
    assert sizes(pages(api, url, 30)) == seven
    emulator.modes(short_pages=8)
    assert sizes(pages(api, url, 30)) != seven
    emulator.reset(contacts=300, leads=150, seed=7, modes={"short_pages": 7})
    assert sizes(pages(api, url, 30)) == seven
    emulator.modes(short_pages=None)
    assert sizes(pages(api, url, 30)) == [30] * 5
    for bad in ("7", True, {"seed": "7"}, {"seed": 7, "x": 1}):
        with pytest.raises(ControlCallError, match="short_pages"):
            emulator.modes(short_pages=bad)


def test_short_pages_with_top_serve_exactly_the_top_rows(emulator: EmulatorClient, api: WebApi) -> None:
    """Without a page size, pages stay below 5,000 and ``$top`` still bounds the whole sequence."""
    emulator.reset(contacts=5200, leads=0, seed=7)
    first = get(api, "contacts?$select=contactid")
    whole = keys(first["value"]) + keys(get(api, first["@odata.nextLink"])["value"])
    emulator.modes(short_pages=3)
    found: list[list[dict[str, Any]]] = []
    link: str | None = "contacts?$select=contactid&$top=5100"
    while link:
        body = get(api, link)
        found.append(body["value"])
        link = body.get("@odata.nextLink")
    assert all(n < 5000 for n in sizes(found)), sizes(found)
    assert len(found) >= 2
    assert flat(found) == whole[:5100]


def test_short_pages_inside_batch(emulator: EmulatorClient, api: WebApi) -> None:
    url = "msdynci_alternatekeys?$select=modifiedon"
    whole = keys(get(api, url)["value"], "msdynci_alternatekeyid")
    emulator.modes(short_pages=3)
    found: list[list[dict[str, Any]]] = []
    link: str | None = f"{api.api_url}{url}"
    while link:
        request = part("GET", link, headers=page_size(50))
        answer = single(parse(post_batch(api, [request]))[0])
        assert answer.status == 200
        found.append(answer.body["value"])
        link = answer.body.get("@odata.nextLink")
    assert_short(found, 50)
    assert flat(found, "msdynci_alternatekeyid") == whole
