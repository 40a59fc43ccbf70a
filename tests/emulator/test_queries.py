"""Collection queries, single-row reads and the read-side modes of the emulator, over HTTP.

Every test runs against the session's emulator server through the ``api`` fixture (the application
user "hydration-app") on the standard scene: 300 contacts, 150 leads, seed 7, default modes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from dataverse_emulator.client import EmulatorClient, WebApi

INVALID = "0x80060888"
NOT_FOUND = "0x80040217"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WHOLE_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MILLISECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LOOKUP = "_msdynci_lookupfield_customer_value"
ANNOTATIONS = {"Prefer": 'odata.include-annotations="*"'}


def query(api: WebApi, table: str, *, headers: dict[str, str] | None = None, **options: str) -> Any:
    """``GET <table>`` with ``$<name>`` query options; the raw response."""
    return api.get(table, params={f"${k}": v for k, v in options.items()}, headers=headers)


def rows(api: WebApi, table: str, **options: str) -> list[dict[str, Any]]:
    """Every row a query returns, in order (the scenes here fit in one 5,000-row page)."""
    response = query(api, table, **options)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "@odata.nextLink" not in body
    return list(body["value"])


def ids(found: list[dict[str, Any]], key: str = "contactid") -> list[str]:
    return [r[key] for r in found]


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message


def iso(micros: int) -> str:
    """A bare ISO date-time literal with milliseconds."""
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros // 1000 % 1000:03d}Z"


def create_contact(api: WebApi, body: dict[str, Any]) -> str:
    response = api.post("contacts", json=body)
    assert response.status_code == 204, response.text
    match = re.search(r"contacts\(([0-9a-f-]{36})\)$", response.headers["OData-EntityId"])
    assert match
    return match.group(1)


# -- $select --------------------------------------------------------------------------------------------


def test_select_returns_the_key_the_columns_and_an_etag_per_row(api: WebApi) -> None:
    response = query(api, "contacts", select="fullname,lastname", top="5")
    assert response.status_code == 200
    assert response.headers["OData-Version"] == "4.0"
    body = response.json()
    assert body["@odata.context"] == f"{api.api_url}$metadata#contacts(fullname,lastname)"
    assert len(body["value"]) == 5
    versions = set()
    for row in body["value"]:
        assert list(row) == ["@odata.etag", "contactid", "fullname", "lastname"]
        assert GUID.match(row["contactid"])
        match = re.fullmatch(r'W/"(\d+)"', row["@odata.etag"])
        assert match, row["@odata.etag"]
        versions.add(int(match.group(1)))
        assert row["fullname"].endswith(" " + row["lastname"])
    assert len(versions) == 5


def test_etag_is_the_row_version_and_moves_on_write(api: WebApi) -> None:
    row = rows(api, "contacts", select="versionnumber", top="1")[0]
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
    patched = api.patch(
        f"contacts({row['contactid']})", json={"firstname": "Moved"}, headers={"If-Match": "*"}
    )
    assert patched.status_code == 204
    again = rows(api, "contacts", select="versionnumber", filter=f"contactid eq {row['contactid']}")[0]
    assert again["versionnumber"] > row["versionnumber"]
    assert again["@odata.etag"] == f'W/"{again["versionnumber"]}"'


def test_select_of_only_the_key_and_without_select(api: WebApi) -> None:
    only_key = query(api, "contacts", select="contactid", top="1").json()
    assert only_key["@odata.context"].endswith("$metadata#contacts(contactid)")
    assert list(only_key["value"][0]) == ["@odata.etag", "contactid"]
    everything = query(api, "contacts", top="1").json()
    assert everything["@odata.context"] == f"{api.api_url}$metadata#contacts"
    assert {
        "contactid",
        "fullname",
        "firstname",
        "lastname",
        "emailaddress1",
        "modifiedon",
        "createdon",
    } <= set(everything["value"][0])


def test_select_of_an_unknown_property_is_refused(api: WebApi) -> None:
    assert_error(
        query(api, "contacts", select="fullname,x"),
        400,
        INVALID,
        "Could not find a property named 'x' on type 'Microsoft.Dynamics.CRM.contact'.",
    )


def test_a_lookup_is_selected_by_its_value_name_only(api: WebApi) -> None:
    body = query(api, "msdynci_alternatekeys", select=f"msdynci_alternatevalue,{LOOKUP}", top="3").json()
    assert body["@odata.context"].endswith(
        f"$metadata#msdynci_alternatekeys(msdynci_alternatevalue,{LOOKUP})"
    )
    for row in body["value"]:
        assert list(row) == ["@odata.etag", "msdynci_alternatekeyid", "msdynci_alternatevalue", LOOKUP]
        assert GUID.match(row[LOOKUP])
    assert_error(
        query(api, "msdynci_alternatekeys", select="msdynci_lookupfield_customer"),
        400,
        INVALID,
        "Could not find a property named 'msdynci_lookupfield_customer' on type "
        "'Microsoft.Dynamics.CRM.msdynci_alternatekey'.",
    )


# -- $filter --------------------------------------------------------------------------------------------


COMPARISONS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("firstname eq 'Ana'", lambda r: r["firstname"] == "Ana"),
    ("firstname ne 'Ana'", lambda r: r["firstname"] != "Ana"),
    ("lastname gt 'Haddad'", lambda r: r["lastname"].lower() > "haddad"),
    ("lastname ge 'Haddad'", lambda r: r["lastname"].lower() >= "haddad"),
    ("lastname lt 'Cohen'", lambda r: r["lastname"].lower() < "cohen"),
    ("lastname le 'Cohen'", lambda r: r["lastname"].lower() <= "cohen"),
    (
        "firstname eq 'Ana' and lastname eq 'Brown'",
        lambda r: (r["firstname"], r["lastname"]) == ("Ana", "Brown"),
    ),
    (
        "firstname eq 'Ana' or lastname eq 'Brown'",
        lambda r: r["firstname"] == "Ana" or r["lastname"] == "Brown",
    ),
    ("not firstname eq 'Ana'", lambda r: r["firstname"] != "Ana"),
    (
        "(firstname eq 'Ana' or firstname eq 'Ben') and not (lastname eq 'Brown' or lastname eq 'Khan')",
        lambda r: r["firstname"] in ("Ana", "Ben") and r["lastname"] not in ("Brown", "Khan"),
    ),
    (
        "firstname eq 'Ana' or firstname eq 'Ben' and lastname eq 'Khan'",
        lambda r: r["firstname"] == "Ana" or (r["firstname"] == "Ben" and r["lastname"] == "Khan"),
    ),
    ("'Ana' eq firstname", lambda r: r["firstname"] == "Ana"),
    ("statecode eq 0", lambda r: r["statecode"] == 0),
    ("statecode gt 0", lambda r: r["statecode"] > 0),
]


@pytest.mark.parametrize(("text", "expected"), COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_filter_operators_on_real_rows(
    api: WebApi, text: str, expected: Callable[[dict[str, Any]], bool]
) -> None:
    everything = rows(api, "contacts", select="firstname,lastname,statecode")
    assert len(everything) == 300
    wanted = [r["contactid"] for r in everything if expected(r)]
    found = ids(rows(api, "contacts", select="firstname,lastname,statecode", filter=text))
    assert found == wanted
    if text.startswith(("firstname eq 'Ana'", "'Ana'")):
        assert 0 < len(found) < 300


def test_string_literal_with_a_doubled_quote_and_case_insensitive_equality(api: WebApi) -> None:
    key = create_contact(api, {"fullname": "Dara O'Neil", "firstname": "Dara", "lastname": "O'Neil"})
    for text in ("fullname eq 'Dara O''Neil'", "fullname eq 'DARA o''neil'", "lastname eq 'o''NEIL'"):
        found = rows(api, "contacts", select="fullname", filter=text)
        assert found == [
            {"@odata.etag": found[0]["@odata.etag"], "contactid": key, "fullname": "Dara O'Neil"}
        ]
    assert rows(api, "contacts", select="fullname", filter="fullname eq 'Dara ONeil'") == []
    every_hana = {
        r["contactid"] for r in rows(api, "contacts", select="firstname") if r["firstname"] == "Hana"
    }
    assert every_hana
    assert set(ids(rows(api, "contacts", select="firstname", filter="firstname eq 'hANA'"))) == every_hana


def test_null_comparisons(api: WebApi) -> None:
    key = create_contact(api, {"fullname": "No Mail", "firstname": "No", "lastname": "Mail"})
    assert ids(rows(api, "contacts", select="emailaddress1", filter="emailaddress1 eq null")) == [key]
    with_mail = rows(api, "contacts", select="emailaddress1", filter="emailaddress1 ne null")
    assert len(with_mail) == 300
    assert key not in ids(with_mail)
    assert all(r["emailaddress1"] for r in with_mail)
    assert (
        rows(api, "contacts", select="emailaddress1", filter="null eq emailaddress1")[0]["contactid"] == key
    )


def test_bare_guid_filter(api: WebApi) -> None:
    everything = ids(rows(api, "contacts", select="contactid"))
    target = everything[123]
    assert ids(rows(api, "contacts", select="fullname", filter=f"contactid eq {target}")) == [target]
    assert ids(rows(api, "contacts", select="fullname", filter=f"contactid eq {target.upper()}")) == [target]
    rest = ids(rows(api, "contacts", select="fullname", filter=f"contactid ne {target}"))
    assert rest == [k for k in everything if k != target]


def test_modifiedon_window_returns_exactly_the_rows_inside(api: WebApi) -> None:
    everything = rows(api, "contacts", select="modifiedon", orderby="modifiedon asc")
    low, high = everything[100]["modifiedon"], everything[200]["modifiedon"]
    assert WHOLE_SECONDS.match(low)
    assert low < high
    wanted = {r["contactid"] for r in everything if low <= r["modifiedon"] < high}
    assert 90 <= len(wanted) <= 100
    found = rows(api, "contacts", select="modifiedon", filter=f"modifiedon ge {low} and modifiedon lt {high}")
    assert {r["contactid"] for r in found} == wanted
    offset = low.replace("Z", "+00:00")
    shifted = rows(
        api, "contacts", select="modifiedon", filter=f"modifiedon ge {offset} and modifiedon lt {high}"
    )
    assert {r["contactid"] for r in shifted} == wanted
    date_only = everything[0]["modifiedon"][:10]
    since = {r["contactid"] for r in everything if r["modifiedon"] >= date_only}
    assert {
        r["contactid"]
        for r in rows(api, "contacts", select="modifiedon", filter=f"modifiedon ge {date_only}")
    } == since


def test_lookup_value_filters(api: WebApi) -> None:
    mappings = rows(api, "msdynci_alternatekeys", select=LOOKUP)
    assert len(mappings) > 300
    profile = mappings[17][LOOKUP]
    wanted = [r["msdynci_alternatekeyid"] for r in mappings if r[LOOKUP] == profile]
    found = rows(api, "msdynci_alternatekeys", select=LOOKUP, filter=f"{LOOKUP} eq {profile}")
    assert ids(found, "msdynci_alternatekeyid") == wanted
    orphan = api.post("msdynci_alternatekeys", json={"msdynci_alternatevalue": "no-profile"})
    assert orphan.status_code == 204, orphan.text
    linked = rows(api, "msdynci_alternatekeys", select=LOOKUP, filter=f"{LOOKUP} ne null")
    assert ids(linked, "msdynci_alternatekeyid") == ids(mappings, "msdynci_alternatekeyid")
    unlinked = rows(
        api, "msdynci_alternatekeys", select=f"msdynci_alternatevalue,{LOOKUP}", filter=f"{LOOKUP} eq null"
    )
    assert [(r["msdynci_alternatevalue"], r[LOOKUP]) for r in unlinked] == [("no-profile", None)]


def test_in_function_with_fifty_ids(api: WebApi) -> None:
    everything = ids(rows(api, "contacts", select="contactid"))
    chosen = everything[::6][:50]
    assert len(chosen) == 50
    values = ",".join(f"'{k}'" for k in reversed(chosen))
    text = f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{values}])"
    assert ids(rows(api, "contacts", select="fullname", filter=text)) == chosen
    negated = text.replace(".In(", ".NotIn(")
    assert ids(rows(api, "contacts", select="fullname", filter=negated)) == [
        k for k in everything if k not in chosen
    ]


def test_string_literal_against_a_guid_column_is_refused(api: WebApi) -> None:
    assert_error(
        query(api, "contacts", filter="contactid eq 'not-a-guid'"),
        400,
        INVALID,
        "A binary operator with incompatible types was detected. Found operand types 'Edm.Guid' and "
        "'Edm.String' for operator kind 'Equal'.",
    )
    assert_error(
        query(api, "msdynci_alternatekeys", filter=f"{LOOKUP} gt 'x'"),
        400,
        INVALID,
        "A binary operator with incompatible types was detected. Found operand types 'Edm.Guid' and "
        "'Edm.String' for operator kind 'GreaterThan'.",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "(fullname eq 'a'",
            "Syntax error at position 16 in '(fullname eq 'a'': expected ')', found the end of the filter.",
        ),
        (
            "fullname eq 'a')",
            "Syntax error at position 15 in 'fullname eq 'a')': expected 'and', 'or' or the end of the "
            "filter, found ')'.",
        ),
        (
            "fullname eq 'a' and",
            "Syntax error at position 19 in 'fullname eq 'a' and': expected a property name or a literal, "
            "found the end of the filter.",
        ),
        ("foo(fullname)", "An unknown function with name 'foo' was found at position 0 in 'foo(fullname)'."),
        ("nosuch eq 1", "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."),
        ("fullname eq 'open", None),
        ("fullname eq", None),
        ("fullname 'a'", None),
        ("and", None),
        ("()", None),
        ("contains(fullname)", None),
        ("fullname eq fullname", None),
        ("modifiedon ge 2025-13-45T00:00:00Z", None),
        ("statecode eq 99999999999999999999999", None),
        ("Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['x'])", None),
        ("Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[])", None),
        ("(" * 200 + "fullname eq 'a'" + ")" * 200, None),
    ],
)
def test_malformed_filters_answer_400(api: WebApi, text: str, message: str | None) -> None:
    assert_error(query(api, "contacts", filter=text), 400, INVALID, message)


# -- $orderby, $top and the refused options --------------------------------------------------------------


def test_orderby_keys_and_directions(api: WebApi) -> None:
    everything = rows(api, "contacts", select="firstname,lastname,modifiedon")
    assert ids(everything) == sorted(ids(everything))

    found = rows(api, "contacts", select="firstname,lastname", orderby="lastname asc,firstname desc")
    by_first_desc = sorted(everything, key=lambda r: r["contactid"])
    by_first_desc.sort(key=lambda r: r["firstname"].lower(), reverse=True)
    expected = sorted(by_first_desc, key=lambda r: r["lastname"].lower())
    assert ids(found) == ids(expected)

    newest = rows(api, "contacts", select="modifiedon", orderby="modifiedon desc")
    stamps = [r["modifiedon"] for r in newest]
    assert stamps == sorted(stamps, reverse=True)
    assert sorted(ids(newest)) == sorted(ids(everything))

    by_key_desc = rows(api, "contacts", select="contactid", orderby="contactid desc")
    assert ids(by_key_desc) == sorted(ids(everything), reverse=True)


def test_orderby_of_an_unknown_property_or_junk_is_refused(api: WebApi) -> None:
    assert_error(
        query(api, "contacts", orderby="nosuch desc"),
        400,
        INVALID,
        "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'.",
    )
    assert_error(query(api, "contacts", orderby="fullname sideways"), 400, INVALID)
    assert_error(query(api, "msdynci_alternatekeys", orderby="msdynci_lookupfield_customer"), 400, INVALID)


def test_top_without_maxpagesize_caps_the_rows_and_gives_no_next_link(api: WebApi) -> None:
    everything = ids(rows(api, "contacts", select="contactid"))
    response = query(api, "contacts", select="fullname", top="7")
    assert response.status_code == 200
    assert "Preference-Applied" not in response.headers
    body = response.json()
    assert ids(body["value"]) == everything[:7]
    assert "@odata.nextLink" not in body
    assert ids(rows(api, "contacts", select="fullname", top="1000")) == everything


def test_top_is_ignored_with_maxpagesize(api: WebApi) -> None:
    """Microsoft's paging page: "If you include both, $top is ignored." Pages follow maxpagesize."""
    response = query(api, "contacts", select="fullname", top="7", headers={"Prefer": "odata.maxpagesize=100"})
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=100"
    body = response.json()
    assert len(body["value"]) == 100
    assert "$top=7" in body["@odata.nextLink"]


@pytest.mark.parametrize("top", ["0", "-1", "x", "1.5", ""])
def test_invalid_top_is_refused(api: WebApi, top: str) -> None:
    assert_error(
        query(api, "contacts", top=top),
        400,
        INVALID,
        f"Invalid value '{top}' for $top: a positive integer is required.",
    )


def test_refused_query_options(api: WebApi) -> None:
    assert_error(
        query(api, "contacts", skip="10"), 400, INVALID, "The query parameter $skip is not supported."
    )
    assert_error(
        query(api, "contacts", foo="1"), 400, INVALID, "The query parameter '$foo' is not supported."
    )
    assert_error(
        api.get("contacts?$select=fullname&$select=lastname"),
        400,
        INVALID,
        "Query option '$select' was specified more than once, but it must be specified at most once.",
    )
    assert_error(api.get("contacts?$top=1&$top=1"), 400, INVALID)


def test_expand_on_an_elastic_table_is_refused(api: WebApi) -> None:
    assert_error(
        query(api, "msdynci_alternatekeys", select=LOOKUP, expand="msdynci_lookupfield_customer"),
        400,
        "0x80048d0b",
        "Expand is not supported for multi-row queries on elastic tables.",
    )


def test_url_longer_than_32_kb_answers_414(api: WebApi) -> None:
    long_filter = " or ".join(f"fullname eq 'name number {n:05d}'" for n in range(1200))
    response = api.get(f"contacts?$select=fullname&$filter={long_filter}")
    assert len(response.request.url or "") > 32_768
    assert_error(response, 414, "0x80048d19", "The request URL is too long.")
    shorter = " or ".join(f"fullname eq 'name number {n:05d}'" for n in range(300))
    assert api.get(f"contacts?$select=fullname&$filter={shorter}").json()["value"] == []


# -- single rows -----------------------------------------------------------------------------------------


def test_single_row_read(api: WebApi) -> None:
    listed = rows(api, "contacts", select="fullname,modifiedon", top="3")[2]
    key = listed["contactid"]
    response = api.get(f"contacts({key})?$select=fullname,modifiedon")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        **listed,
        "@odata.context": f"{api.api_url}$metadata#contacts(fullname,modifiedon)/$entity",
    }
    whole = api.get(f"contacts({key.upper()})").json()
    assert whole["@odata.context"] == f"{api.api_url}$metadata#contacts/$entity"
    assert whole["contactid"] == key
    assert whole["fullname"] == listed["fullname"]


def test_single_row_errors(api: WebApi) -> None:
    missing = "00000000-0000-4000-8000-000000000001"
    assert_error(
        api.get(f"contacts({missing})?$select=fullname"),
        404,
        NOT_FOUND,
        f"contact With Id = {missing} Does Not Exist",
    )
    key = rows(api, "contacts", select="contactid", top="1")[0]["contactid"]
    assert_error(
        api.get(f"contacts({key})?$select=nosuch"),
        400,
        INVALID,
        "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'.",
    )
    assert api.get(f"contacts({key})?$filter=fullname eq 'x'").status_code == 400
    assert api.get("contacts('not-a-key')").status_code == 400


def test_lookup_annotations_when_asked(api: WebApi) -> None:
    row = rows(api, "msdynci_alternatekeys", select=LOOKUP, top="1")[0]
    key = row["msdynci_alternatekeyid"]
    plain = api.get(f"msdynci_alternatekeys({key})?$select={LOOKUP}").json()
    assert list(plain) == ["@odata.etag", "msdynci_alternatekeyid", LOOKUP, "@odata.context"]
    annotated = api.get(f"msdynci_alternatekeys({key})?$select={LOOKUP}", headers=ANNOTATIONS).json()
    assert list(annotated) == [
        "@odata.etag",
        "msdynci_alternatekeyid",
        f"{LOOKUP}@Microsoft.Dynamics.CRM.associatednavigationproperty",
        f"{LOOKUP}@Microsoft.Dynamics.CRM.lookuplogicalname",
        LOOKUP,
        "@odata.context",
    ]
    assert annotated[f"{LOOKUP}@Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "msdynci_lookupfield_customer"
    )
    assert annotated[f"{LOOKUP}@Microsoft.Dynamics.CRM.lookuplogicalname"] == "msdynci_customerprofile"
    assert annotated[LOOKUP] == row[LOOKUP]

    listed = query(api, "msdynci_alternatekeys", select=LOOKUP, top="2", headers=ANNOTATIONS)
    assert listed.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    for value in listed.json()["value"]:
        assert value[f"{LOOKUP}@Microsoft.Dynamics.CRM.lookuplogicalname"] == "msdynci_customerprofile"


def test_lookup_annotations_on_a_contact_with_the_cid_lookup(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=5, leads=0, seed=7, modes={"cid_lookup": "present"})
    contact = rows(api, "contacts", select="contactid", top="1")[0]["contactid"]
    profile = rows(api, "msdynci_customerprofiles", select="msdynci_customerid", top="1")[0]
    target = f"msdynci_customerprofiles({profile['msdynci_customerprofileid']})"
    bind = {"msdynci_lookupfield_customerprofile@odata.bind": target}
    assert api.patch(f"contacts({contact})", json=bind, headers={"If-Match": "*"}).status_code == 204
    value = "_msdynci_lookupfield_customerprofile_value"
    both = {"Prefer": 'odata.include-annotations="*",odata.maxpagesize=2'}
    found = query(api, "contacts", select=value, filter=f"{value} ne null", headers=both)
    assert found.headers["Preference-Applied"] == 'odata.include-annotations="*",odata.maxpagesize=2'
    assert found.json()["value"] == [
        {
            "@odata.etag": found.json()["value"][0]["@odata.etag"],
            "contactid": contact,
            f"{value}@Microsoft.Dynamics.CRM.associatednavigationproperty": (
                "msdynci_lookupfield_customerprofile"
            ),
            f"{value}@Microsoft.Dynamics.CRM.lookuplogicalname": "msdynci_customerprofile",
            value: profile["msdynci_customerprofileid"],
        }
    ]
    unlinked = query(api, "contacts", select=value, filter=f"{value} eq null", headers=both).json()["value"]
    assert unlinked
    assert all(list(r) == ["@odata.etag", "contactid", value] for r in unlinked)


def test_elastic_row_by_partition_key(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=20, leads=10, seed=7, modes={"profile_partitions": "custom"})
    profile = rows(api, "msdynci_customerprofiles", select="partitionid,msdynci_customerid", top="1")[0]
    key, pid = profile["msdynci_customerprofileid"], profile["partitionid"]
    assert pid == f"cid-{profile['msdynci_customerid'][:8]}"
    right = api.get(f"msdynci_customerprofiles(msdynci_customerprofileid={key},partitionid='{pid}')")
    assert right.status_code == 200
    assert right.json()["msdynci_customerid"] == profile["msdynci_customerid"]
    assert right.json()["@odata.context"] == f"{api.api_url}$metadata#msdynci_customerprofiles/$entity"
    message = f"msdynci_customerprofile With Id = {key} Does Not Exist"
    wrong = api.get(f"msdynci_customerprofiles(msdynci_customerprofileid={key},partitionid='cid-00000000')")
    assert_error(wrong, 404, NOT_FOUND, message)
    assert emulator.modes()["bind_without_partition"] == "not_found"
    assert_error(api.get(f"msdynci_customerprofiles({key})"), 404, NOT_FOUND, message)
    assert_error(
        api.get(f"msdynci_customerprofiles(msdynci_customerprofileid={key})"), 404, NOT_FOUND, message
    )
    emulator.modes(bind_without_partition="resolve")
    resolved = api.get(f"msdynci_customerprofiles({key})")
    assert resolved.status_code == 200
    assert resolved.json()["partitionid"] == pid
    assert_error(wrong, 404, NOT_FOUND, message)
    assert (
        api.get(
            f"contacts(contactid={rows(api, 'contacts', top='1')[0]['contactid']},partitionid='x')"
        ).status_code
        == 400
    )


# -- modifiedon precision --------------------------------------------------------------------------------


def one_row(api: WebApi, key: str, extra: str = "") -> list[dict[str, Any]]:
    text = f"contactid eq {key}" + (f" and {extra}" if extra else "")
    return rows(api, "contacts", select="modifiedon", filter=text)


def test_second_precision_keeps_and_shows_whole_seconds(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=50, leads=0, seed=7, modes={"modifiedon_precision": "second"})
    shown = rows(api, "contacts", select="modifiedon,createdon")
    assert all(WHOLE_SECONDS.match(r["modifiedon"]) and WHOLE_SECONDS.match(r["createdon"]) for r in shown)
    key, stamp = shown[0]["contactid"], shown[0]["modifiedon"]
    assert len(one_row(api, key, f"modifiedon eq {stamp}")) == 1
    assert one_row(api, key, f"modifiedon gt {stamp}") == []
    emulator.modes(modifiedon_precision="millisecond")
    assert {r["modifiedon"][-5:] for r in rows(api, "contacts", select="modifiedon")} == {".000Z"}


def test_millisecond_precision_shows_milliseconds(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.reset(contacts=50, leads=0, seed=7, modes={"modifiedon_precision": "millisecond"})
    shown = rows(api, "contacts", select="modifiedon")
    assert all(MILLISECONDS.match(r["modifiedon"]) for r in shown)
    assert len({r["modifiedon"][-5:] for r in shown}) > 10
    key, stamp = shown[0]["contactid"], shown[0]["modifiedon"]
    assert [r["modifiedon"] for r in one_row(api, key, f"modifiedon eq {stamp}")] == [stamp]
    assert one_row(api, key, f"modifiedon gt {stamp}") == []


def test_hidden_millisecond_shows_seconds_but_filters_on_milliseconds(
    emulator: EmulatorClient, api: WebApi
) -> None:
    """The default: ``modifiedon`` is kept with milliseconds but shown in whole seconds.

    The consequence for a reader that keeps a watermark: ``modifiedon gt <the last value it saw>``
    returns again every row of that last second (they are later than the shown second), so a `gt`
    watermark repeats rows rather than losing them; and ``eq <shown value>`` finds nothing.
    """
    assert emulator.modes()["modifiedon_precision"] == "hidden-millisecond"
    shown = rows(api, "contacts", select="modifiedon", orderby="modifiedon asc")
    assert all(WHOLE_SECONDS.match(r["modifiedon"]) for r in shown)
    emulator.modes(modifiedon_precision="millisecond")
    precise = {r["contactid"]: r["modifiedon"] for r in rows(api, "contacts", select="modifiedon")}
    emulator.modes(modifiedon_precision="hidden-millisecond")
    row = next(r for r in shown if not precise[r["contactid"]].endswith(".000Z"))
    key, stamp = row["contactid"], row["modifiedon"]
    assert precise[key].startswith(stamp[:-1] + ".")
    assert [r["modifiedon"] for r in one_row(api, key, f"modifiedon gt {stamp}")] == [stamp]
    assert one_row(api, key, f"modifiedon eq {stamp}") == []
    assert len(one_row(api, key, f"modifiedon eq {precise[key]}")) == 1

    watermark = shown[-1]["modifiedon"]
    again = rows(api, "contacts", select="modifiedon", filter=f"modifiedon gt {watermark}")
    expected = {k for k, v in precise.items() if v.startswith(watermark[:-1]) and not v.endswith(".000Z")}
    assert {r["contactid"] for r in again} == expected
    assert shown[-1]["contactid"] in expected
    assert all(r["modifiedon"] == watermark for r in again)


# -- elastic read lag ------------------------------------------------------------------------------------


def test_elastic_read_lag_hides_ci_d_writes_until_the_lag_passes(
    emulator: EmulatorClient, api: WebApi
) -> None:
    """CI-D's rewritten mapping rows are hidden from other users for the lag, and hidden entirely.

    During the lag the app user neither sees the new version of a moved row nor its old one: the
    row is missing from every query, so the total it can count drops by the rows CI-D rewrote.
    Rows CI-D deleted are gone at once. Standard tables (contacts) never lag.
    """
    mapping_ids = ids(
        rows(api, "msdynci_alternatekeys", select="msdynci_alternatekeyid"), "msdynci_alternatekeyid"
    )
    contact_ids = set(ids(rows(api, "contacts", select="contactid")))
    emulator.modes(elastic_read_lag_seconds=30)
    start = emulator.now()
    changes = emulator.reunify(0.05, seed=3)
    rewritten = changes["moved"] + changes["mapped_existing"] + changes["mapped_new"] + changes["merged_rows"]
    assert changes["moved"] > 0
    assert changes["mapped_new"] > 0
    assert changes["deleted"] > 0

    since = f"modifiedon ge {iso(start - start % 1000)}"
    ci_d = emulator.web_api("ci-d")
    written = ids(
        rows(ci_d, "msdynci_alternatekeys", select="modifiedon", filter=since), "msdynci_alternatekeyid"
    )
    assert len(written) == rewritten
    assert rows(api, "msdynci_alternatekeys", select="modifiedon", filter=since) == []
    visible = ids(
        rows(api, "msdynci_alternatekeys", select="msdynci_alternatekeyid"), "msdynci_alternatekeyid"
    )
    moved_or_merged = changes["moved"] + changes["merged_rows"]
    assert len(visible) == len(mapping_ids) - changes["deleted"] - moved_or_merged
    assert not set(visible) & set(written)
    assert api.get(f"msdynci_alternatekeys({written[0]})").status_code == 404
    assert ci_d.get(f"msdynci_alternatekeys({written[0]})").status_code == 200

    new_contacts = set(ids(rows(api, "contacts", select="contactid"))) - contact_ids
    assert len(new_contacts) == changes["mapped_new"]
    new_values = rows(ci_d, "msdynci_alternatekeys", select="msdynci_alternatevalue", filter=since)
    assert new_contacts <= {r["msdynci_alternatevalue"] for r in new_values}

    emulator.advance_clock(29)
    assert rows(api, "msdynci_alternatekeys", select="modifiedon", filter=since) == []
    emulator.advance_clock(2)
    after = ids(
        rows(api, "msdynci_alternatekeys", select="modifiedon", filter=since), "msdynci_alternatekeyid"
    )
    assert after == written
    total = rows(api, "msdynci_alternatekeys", select="msdynci_alternatekeyid")
    assert (
        len(total)
        == len(mapping_ids) - changes["deleted"] + changes["mapped_existing"] + changes["mapped_new"]
    )


def test_own_elastic_writes_are_visible_at_once_to_the_writer_only(
    emulator: EmulatorClient, api: WebApi
) -> None:
    """A user reads its own elastic write at once; another user does not see the row at all.

    The hidden row is hidden entirely during the lag: the other user gets 404 for it and no row
    from a collection query, not the version before the write.
    """
    emulator.modes(elastic_read_lag_seconds=30)
    profile = rows(api, "msdynci_customerprofiles", select="msdynci_fullname", top="1")[0]
    key = profile["msdynci_customerprofileid"]
    patched = api.patch(
        f"msdynci_customerprofiles({key})",
        json={"msdynci_fullname": "Renamed Here"},
        headers={"If-Match": "*"},
    )
    assert patched.status_code == 204, patched.text
    assert api.get(f"msdynci_customerprofiles({key})?$select=msdynci_fullname").json()[
        "msdynci_fullname"
    ] == ("Renamed Here")
    own = rows(
        api,
        "msdynci_customerprofiles",
        select="msdynci_fullname",
        filter=f"msdynci_customerprofileid eq {key}",
    )
    assert [r["msdynci_fullname"] for r in own] == ["Renamed Here"]

    other = emulator.web_api("other-user")
    assert_error(
        other.get(f"msdynci_customerprofiles({key})"),
        404,
        NOT_FOUND,
        f"msdynci_customerprofile With Id = {key} Does Not Exist",
    )
    by_other = query(
        other,
        "msdynci_customerprofiles",
        select="msdynci_fullname",
        filter=f"msdynci_customerprofileid eq {key}",
    )
    assert by_other.json()["value"] == []

    contact = rows(api, "contacts", select="contactid", top="1")[0]["contactid"]
    assert (
        api.patch(
            f"contacts({contact})", json={"firstname": "Instant"}, headers={"If-Match": "*"}
        ).status_code
        == 204
    )
    assert other.get(f"contacts({contact})?$select=firstname").json()["firstname"] == "Instant"

    emulator.advance_clock(31)
    seen = other.get(f"msdynci_customerprofiles({key})?$select=msdynci_fullname")
    assert seen.status_code == 200
    assert seen.json()["msdynci_fullname"] == "Renamed Here"
