"""Property-based tests of the OData literals, with the emulator's ``$filter`` parser as the oracle.

Whatever text a string literal carries (quotes, parentheses, ``and``/``or``, newlines, any Unicode), the
filter built from it parses back to exactly the comparison that was meant, holding exactly that text:
nothing a value holds can change the shape of a query. GUIDs and date-times round-trip the same way.
"""

from __future__ import annotations

import string as ascii_text
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataverse_emulator.odata_filter import And, Compare, In, Literal, Property, parse_filter
from dataverse_emulator.values import parse_datetime
from hydration.dataverse import odata
from hydration.dataverse.odata import InvalidGuidError, InvalidNameError

FAST = settings(max_examples=200, deadline=None, database=None)
HOSTILE = st.sampled_from(["'", "''", "' or 1 eq 1 or '", "') or true or ('", "x' and y eq 'z", "\n", "'\t'"])
TEXT = st.one_of(st.text(), st.text(alphabet="'() ,=[]andorteqx\t\n"), HOSTILE)
GUIDS = st.uuids().map(str)


@FAST
@given(TEXT)
@example("O'Brien")
@example("''''")
def test_a_string_literal_parses_back_to_its_exact_text(value: str) -> None:
    parsed = parse_filter(f"msdynci_datasourcename eq {odata.string(value)}")
    assert parsed == Compare("eq", Property("msdynci_datasourcename"), Literal("string", value))


@FAST
@given(TEXT, TEXT)
def test_string_literals_never_change_the_shape_of_a_filter(first: str, second: str) -> None:
    text = f"msdynci_datasourcename eq {odata.string(first)} and msdynci_entityname eq {odata.string(second)}"
    assert parse_filter(text) == And(
        Compare("eq", Property("msdynci_datasourcename"), Literal("string", first)),
        Compare("eq", Property("msdynci_entityname"), Literal("string", second)),
    )


@FAST
@given(st.lists(GUIDS, min_size=1, max_size=8), st.booleans())
def test_an_in_filter_parses_back_to_its_normalised_keys(keys: list[str], upper: bool) -> None:
    sent = [k.upper() for k in keys] if upper else keys
    parsed = parse_filter(odata.in_filter("contactid", sent))
    assert parsed == In(Property("contactid"), tuple(keys), negate=False)


@FAST
@given(st.lists(st.one_of(GUIDS, TEXT), min_size=1, max_size=5))
def test_an_in_filter_refuses_any_list_holding_a_non_guid(values: list[str]) -> None:
    canonical = all(odata.try_guid(v) is not None for v in values)
    try:
        parsed = parse_filter(odata.in_filter("contactid", values))
    except InvalidGuidError:
        assert not canonical
    else:
        assert canonical
        assert isinstance(parsed, In)
        assert parsed.values == tuple(v.lower() for v in values)


@FAST
@given(st.text())
@example("{" + str(uuid.UUID(int=1)) + "}")
@example(str(uuid.UUID(int=1)).replace("-", ""))
def test_a_guid_is_canonical_or_refused(value: str) -> None:
    try:
        normal = odata.normalize_guid(value)
    except InvalidGuidError:
        assert odata.try_guid(value) is None
        return
    assert normal == str(uuid.UUID(normal))  # lowercase, hyphenated
    assert normal == value.lower()  # only the case changes, never the form
    assert odata.normalize_guid(normal) == normal


@FAST
@given(GUIDS)
def test_a_guid_literal_is_a_guid_to_the_parser(key: str) -> None:
    parsed = parse_filter(f"msdynci_alternatekeyid gt {odata.normalize_guid(key.upper())}")
    assert parsed == Compare("gt", Property("msdynci_alternatekeyid"), Literal("guid", key))


@FAST
@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_a_moment_parses_back_to_the_same_millisecond(moment: datetime, offset_minutes: int) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    parsed = parse_filter(f"modifiedon ge {odata.moment(local)}")
    assert isinstance(parsed, Compare)
    truncated = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parsed.literal == Literal("datetime", parse_datetime(truncated.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))


@FAST
@given(st.text(alphabet=ascii_text.ascii_letters + ascii_text.digits + "_' ()/-.", max_size=140))
def test_a_logical_name_is_a_plain_property_or_refused(name: str) -> None:
    try:
        odata.logical_name(name)
    except InvalidNameError:
        return
    if name in ("and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "null", "true", "false"):
        return  # valid Dataverse names that are filter keywords: never a table or column of the product
    assert parse_filter(f"{name} eq 1") == Compare("eq", Property(name), Literal("int", 1))
