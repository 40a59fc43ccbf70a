"""The organization URL value: one normalisation, compared by value, strict about what it accepts."""

from __future__ import annotations

import pytest

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
