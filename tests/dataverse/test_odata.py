"""OData names and literals: validation of names, GUID normalisation, quoting, date-times, In filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hydration.dataverse import odata
from hydration.dataverse.odata import InvalidGuidError, InvalidNameError

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

HOSTILE_NAMES = [
    "",
    "Contact",
    "CONTACT",
    "contact'",
    "contact') or true",
    "contact'); drop table",
    "contacts?$select=*",
    "contact/../account",
    "../x",
    "contact ",
    " contact",
    "con tact",
    "contact%27",
    "contact\x00",
    "contact\r\nHost: evil",
    "_contact",
    "1contact",
    "contact-x",
    "contàct",
    "x" * 129,
]


# -- logical and schema names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["contact", "lead", "msdynci_customerprofile", "new_x1", "a", "x" * 128])
def test_valid_logical_names(name: str) -> None:
    assert odata.logical_name(name) == name


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, None, 1, b"contact", ["contact"]])
def test_invalid_logical_names(name: Any) -> None:
    with pytest.raises(InvalidNameError, match="logical name"):
        odata.logical_name(name)


@pytest.mark.parametrize(
    ("check", "name"), [(odata.logical_name, "contact\n"), (odata.schema_name, "new_Name\n")]
)
def test_trailing_newline_is_not_a_name(check: Any, name: str) -> None:
    with pytest.raises(InvalidNameError):
        check(name)


@pytest.mark.parametrize(
    "name",
    ["new_CustomerProfile", "msdynci_LookupField_CustomerProfile", "Cr1a2_Link", "new_x", "a_bc_d"],
)
def test_valid_schema_names(name: str) -> None:
    assert odata.schema_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "CustomerProfile",  # no publisher prefix
        "_CustomerProfile",
        "new_",
        "1new_Name",
        "new-Name",
        "new_Name'",
        "new_Name');drop",
        "new_Na me",
        "new_../x",
        "new_" + "x" * 121,
        "",
        None,
        7,
    ],
)
def test_invalid_schema_names(name: Any) -> None:
    with pytest.raises(InvalidNameError, match="schema name"):
        odata.schema_name(name)


def test_invalid_name_error_is_a_value_error() -> None:
    assert issubclass(InvalidNameError, ValueError)
    assert issubclass(InvalidGuidError, ValueError)


def test_lookup_value() -> None:
    assert (
        odata.lookup_value("msdynci_lookupfield_customerprofile")
        == "_msdynci_lookupfield_customerprofile_value"
    )


@pytest.mark.parametrize("name", ["Lookup", "x') or true", ""])
def test_lookup_value_validates_the_name(name: str) -> None:
    with pytest.raises(InvalidNameError):
        odata.lookup_value(name)


# -- GUIDs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        GUID,
        GUID.upper(),
        "0F8FAD5B-d9cb-469F-a165-70867728950E",
    ],
)
def test_guid_forms_normalise(value: str) -> None:
    assert odata.normalize_guid(value) == GUID


@pytest.mark.parametrize(
    "value",
    [
        "{" + GUID + "}",
        "{" + GUID.upper() + "}",
        "{" + GUID,
        GUID + "}",
        GUID.replace("-", ""),
        GUID.replace("-", "").upper(),
        "  " + GUID + "\t",
        GUID + "\n",
    ],
)
def test_forms_an_in_lookup_of_the_mapping_would_never_find_are_invalid_keys(value: str) -> None:
    # msdynci_alternatevalue is a string: In(...) with the bare GUID never matches '{guid}' or the
    # unhyphenated form, so such a row is an invalid key rather than a key that silently finds nothing
    with pytest.raises(InvalidGuidError, match="not a GUID"):
        odata.normalize_guid(value)
    assert odata.try_guid(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not a guid",
        GUID[:-1],
        GUID + "0",
        GUID.replace("0", "g", 1),
        "'" + GUID + "'",
        GUID + "') or true",
        "(" + GUID + ")",
        GUID + "\nx",
        "urn:uuid:" + GUID,
        None,
        42,
        b"0f8fad5b-d9cb-469f-a165-70867728950e",
    ],
)
def test_junk_is_not_a_guid(value: Any) -> None:
    with pytest.raises(InvalidGuidError, match="not a GUID"):
        odata.normalize_guid(value)
    assert odata.try_guid(value) is None


def test_guid_error_message_is_bounded() -> None:
    with pytest.raises(InvalidGuidError) as caught:
        odata.normalize_guid("x" * 10_000)
    assert len(str(caught.value)) <= 80


def test_try_guid_normalises() -> None:
    assert odata.try_guid(GUID.upper()) == GUID


# -- string literals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("contact", "'contact'"),
        ("", "''"),
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ("x') or true or ('", "'x'') or true or ('''"),
        ("Zoë", "'Zoë'"),
    ],
)
def test_string_literal_doubles_quotes(value: str, literal: str) -> None:
    assert odata.string(value) == literal


# -- date-times ------------------------------------------------------------------------------------


def test_moment_of_utc() -> None:
    assert odata.moment(datetime(2025, 1, 1, 10, 0, tzinfo=UTC)) == "2025-01-01T10:00:00.000Z"


def test_moment_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert odata.moment(datetime(2025, 1, 1, 1, 30, tzinfo=plus_two)) == "2024-12-31T23:30:00.000Z"


def test_moment_has_milliseconds_truncated() -> None:
    value = datetime(2025, 6, 30, 23, 59, 59, 123_999, tzinfo=UTC)
    assert odata.moment(value) == "2025-06-30T23:59:59.123Z"
    assert odata.moment(value.replace(microsecond=7_000)) == "2025-06-30T23:59:59.007Z"


def test_moment_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        odata.moment(datetime(2025, 1, 1, 10, 0))


# -- In filter -------------------------------------------------------------------------------------


def test_in_filter() -> None:
    other = "11111111-2222-3333-4444-555555555555"
    assert odata.in_filter("contactid", [GUID.upper(), other]) == (
        f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['{GUID}','{other}'])"
    )


def test_in_filter_accepts_any_iterable() -> None:
    text = odata.in_filter("leadid", (g for g in [GUID]))
    assert text.endswith(f"PropertyValues=['{GUID}'])")


@pytest.mark.parametrize("bad", ["x') or true or ('", "{" + GUID + "}"])
def test_in_filter_refuses_a_bad_key(bad: str) -> None:
    with pytest.raises(InvalidGuidError):
        odata.in_filter("contactid", [GUID, bad])


def test_in_filter_refuses_a_bad_property_name() -> None:
    with pytest.raises(InvalidNameError):
        odata.in_filter("contactid') or ('", [GUID])


def test_in_strings_escapes_its_values_and_keeps_their_form() -> None:
    text = odata.in_strings("msdynci_alternatevalue", ["{" + GUID + "}", "x') or true or ('"])
    assert text == (
        "Microsoft.Dynamics.CRM.In(PropertyName='msdynci_alternatevalue',"
        f"PropertyValues=['{{{GUID}}}','x'') or true or ('''])"
    )


def test_in_strings_refuses_a_bad_property_name() -> None:
    with pytest.raises(InvalidNameError):
        odata.in_strings("x') or ('", ["a"])
