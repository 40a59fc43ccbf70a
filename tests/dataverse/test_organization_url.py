"""The organization URL value: one normalisation, compared by value, strict about what it accepts."""

from __future__ import annotations

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from hydration.dataverse.organization_url import InvalidOrganizationUrlError, OrganizationUrl

ORG = OrganizationUrl.parse("https://contoso.crm.dynamics.com")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://contoso.crm.dynamics.com/", "https://contoso.crm.dynamics.com"),
        ("HTTPS://Contoso.CRM.Dynamics.com:443", "https://contoso.crm.dynamics.com"),
        ("https://contoso.crm.dynamics.com:8443", "https://contoso.crm.dynamics.com:8443"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:80/", "http://localhost"),
        ("http://[::1]:5000", "http://[::1]:5000"),
    ],
)
def test_one_normalisation(text: str, expected: str) -> None:
    parsed = OrganizationUrl.parse(text)
    assert str(parsed) == expected
    assert OrganizationUrl.parse(expected) == parsed
    assert hash(OrganizationUrl.parse(expected)) == hash(parsed)


def test_explicit_default_port_is_the_same_organization() -> None:
    assert OrganizationUrl.parse("https://contoso.crm.dynamics.com:443/") == ORG
    assert ORG.effective_port == 443
    assert ORG.port is None
    assert OrganizationUrl.parse("https://contoso.crm.dynamics.com:444") != ORG
    assert OrganizationUrl.parse("http://contoso.crm.dynamics.com") != ORG


@pytest.mark.parametrize(
    "text",
    [
        "",
        "contoso.crm.dynamics.com",
        "ftp://contoso.crm.dynamics.com",
        "https://",
        "https:///x",
        "file:///etc/passwd",
        "https://contoso.crm.dynamics.com/main.aspx",
        "https://contoso.crm.dynamics.com?x=1",
        "https://contoso.crm.dynamics.com#top",
        "https://user:s3cret@contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com:99999",
        "https://contoso.crm.dynamics.com:abc",
        "https://contoso.crm.dynamics.com\\@evil.example.com",
        "https://contoso.crm.dynamics.com ",
        "https://contoso.crm.dynamics.com.",
        "https://con_toso.crm.dynamics.com",
        "https://contoso.crm.dynamics.c\u043em",
    ],
)
def test_refuses_anything_but_an_origin(text: str) -> None:
    with pytest.raises(InvalidOrganizationUrlError, match="not an organization URL") as caught:
        OrganizationUrl.parse(text)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("value", [None, 42, b"https://contoso.crm.dynamics.com"])
def test_refuses_what_is_not_text(value: object) -> None:
    with pytest.raises(InvalidOrganizationUrlError):
        OrganizationUrl.parse(value)


def test_is_a_value_error() -> None:
    assert issubclass(InvalidOrganizationUrlError, ValueError)


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidOrganizationUrlError):
        OrganizationUrl("https", "contoso.crm.dynamics.com", 443)  # the default port is never stored
    with pytest.raises(InvalidOrganizationUrlError):
        OrganizationUrl("gopher", "contoso.crm.dynamics.com")


@pytest.mark.parametrize(
    ("text", "loopback"),
    [("http://127.0.0.1:1", True), ("http://localhost", True), ("http://[::1]", True), (str(ORG), False)],
)
def test_loopback(text: str, loopback: bool) -> None:
    assert OrganizationUrl.parse(text).is_loopback is loopback


def test_owns_links_to_exactly_its_origin() -> None:
    assert ORG.owns("https://contoso.crm.dynamics.com/api/data/v9.2/contacts?$skiptoken=%3Ccookie%3E")
    assert ORG.owns("https://CONTOSO.crm.dynamics.com:443/api/data/v9.2/contacts")
    assert not ORG.owns("https://contoso.crm.dynamics.com:444/api/data/v9.2/contacts")
    assert not ORG.owns("http://contoso.crm.dynamics.com/api/data/v9.2/contacts")
    assert not ORG.owns("https://evil.example.com\\@contoso.crm.dynamics.com/x")
    assert not ORG.owns(None)


# -- property: whatever owns() accepts, the transport sends to the organization --------------------

PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "//",
        "127.0.0.1",
        "127.0.0.2",
        "localhost",
        "evil.example.com",
        ":5555",
        ":6666",
        ":80",
        ":",
        "@",
        "\\",
        "/",
        "%2e",
        "%40",
        "#",
        "?",
        ".",
        "[::1]",
        "user:pw",
        "/api/data/v9.2/contacts",
        "?$skiptoken=%3Ccookie%3E",
        " ",
        "\t",
    ]
)
LOCAL = OrganizationUrl.parse("http://127.0.0.1:5555")


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(PIECES, min_size=1, max_size=8).map("".join))
@example("http://127.0.0.1:6666\\@127.0.0.1:5555/api/data/v9.2/contacts")
@example("http://127.0.0.1:5555/api/data/v9.2/contacts")
def test_a_link_it_owns_is_sent_to_the_organization_by_the_transport(link: str) -> None:
    if not LOCAL.owns(link):
        return
    prepared = requests.Request("GET", link).prepare()
    target = parse_url(prepared.url or "")
    assert (target.scheme, target.host, target.port or 80) == ("http", "127.0.0.1", 5555)
    assert target.auth is None
