"""The paginator: follows next links exactly as given, only to the organization, never in a loop."""

from __future__ import annotations

from typing import Any

import pytest

from hydration.dataverse.errors import FatalError, UnsafeLinkError
from hydration.dataverse.organization_url import OrganizationUrl
from hydration.dataverse.paging import Paginator, PagingLoopError

ORG = "https://org.crm.dynamics.com"
LINK = ORG + "/api/data/v9.2/contacts?$select=contactid&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"


def page(link: str | None = None, rows: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"value": [{"contactid": str(i)} for i in range(rows)]}
    if link is not None:
        body["@odata.nextLink"] = link
    return body


def test_follows_same_origin_links_exactly_as_given() -> None:
    paginator = Paginator(ORG)
    second = LINK
    third = LINK.replace("%222%22", "%223%22")
    assert paginator.advance(page(second)) == second
    assert paginator.advance(page(third)) == third
    assert paginator.advance(page()) is None
    assert paginator.pages == 3


def test_explicit_default_port_and_case_are_the_same_origin() -> None:
    paginator = Paginator(ORG + "/")
    link = "https://ORG.crm.dynamics.com:443/api/data/v9.2/contacts?$skiptoken=x"
    assert paginator.advance(page(link)) == link


def test_single_page() -> None:
    paginator = Paginator(ORG)
    assert paginator.advance(page(rows=0)) is None
    assert paginator.pages == 1


def test_counts_pages_before_refusing() -> None:
    paginator = Paginator(ORG)
    with pytest.raises(UnsafeLinkError):
        paginator.advance(page("https://evil.example.com/api/data/v9.2/contacts"))
    assert paginator.pages == 1


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example.com/api/data/v9.2/contacts?$skiptoken=1",
        "https://org.crm.dynamics.com.evil.example.com/api/data/v9.2/contacts",
        "https://other.crm.dynamics.com/api/data/v9.2/contacts",
        "http://org.crm.dynamics.com/api/data/v9.2/contacts",  # another scheme
        "https://org.crm.dynamics.com:8443/api/data/v9.2/contacts",  # another port
        "https://org.crm.dynamics.com@evil.example.com/api/data/v9.2/contacts",  # userinfo trick
        "//evil.example.com/api/data/v9.2/contacts",
        "/api/data/v9.2/contacts?$skiptoken=1",  # relative: not as Dataverse gives it
        "",
        "javascript:alert(1)",
        # the transport (urllib3) and urlsplit disagree on these: refused, whatever either reads
        "https://evil.example.com\\@org.crm.dynamics.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com\\@evil.example.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com:443\\@org.crm.dynamics.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com/api\\data/v9.2/contacts",
        "https://org.crm.dynamics.com%2eevil.example.com/api/data/v9.2/contacts",
        "https://org%2ecrm.dynamics.com/api/data/v9.2/contacts",
        "https://:@org.crm.dynamics.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com\t/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com /api/data/v9.2/contacts",
        "https://org.crm.dynamics.com\n.evil.example.com/x",
        "https://org.crm.dynamics.com./api/data/v9.2/contacts",
        "https://org.crm.dynamics.\u0441om/api/data/v9.2/contacts",
        "https://[::1]/api/data/v9.2/contacts",
    ],
)
def test_refuses_links_outside_the_organization(link: str) -> None:
    with pytest.raises(UnsafeLinkError, match="outside the organization"):
        Paginator(ORG).advance(page(link))


@pytest.mark.parametrize("link", [42, ["https://org.crm.dynamics.com/x"], {"href": LINK}, True])
def test_refuses_links_that_are_not_text(link: Any) -> None:
    with pytest.raises(UnsafeLinkError):
        Paginator(ORG).advance({"value": [], "@odata.nextLink": link})


def test_refuses_a_repeated_link() -> None:
    paginator = Paginator(ORG)
    assert paginator.advance(page(LINK)) == LINK
    with pytest.raises(PagingLoopError, match="same next link"):
        paginator.advance(page(LINK))


def test_loop_error_is_fatal() -> None:
    assert issubclass(PagingLoopError, FatalError)
    assert issubclass(UnsafeLinkError, FatalError)


def test_check_returns_a_same_origin_link() -> None:
    paginator = Paginator(ORG)
    assert paginator.check(LINK) == LINK
    assert paginator.pages == 0


@pytest.mark.parametrize("link", ["https://evil.example.com/x", None, 1, "http://org.crm.dynamics.com/x"])
def test_check_refuses_anything_else(link: Any) -> None:
    with pytest.raises(UnsafeLinkError):
        Paginator(ORG).check(link)


def test_loopback_organization_with_port() -> None:
    paginator = Paginator("http://127.0.0.1:5555")
    assert paginator.check("http://127.0.0.1:5555/api/data/v9.2/x") == "http://127.0.0.1:5555/api/data/v9.2/x"
    with pytest.raises(UnsafeLinkError):
        paginator.check("http://127.0.0.1:5556/api/data/v9.2/x")
    with pytest.raises(UnsafeLinkError):
        paginator.check("http://localhost:5555/api/data/v9.2/x")


def test_the_split_authority_link_of_the_issue_is_refused() -> None:
    # urlsplit reads the host as 127.0.0.1:5555 (the organization); requests connects to port 6666
    paginator = Paginator("http://127.0.0.1:5555")
    with pytest.raises(UnsafeLinkError):
        paginator.check("http://127.0.0.1:6666\\@127.0.0.1:5555/api/data/v9.2/contacts?$skiptoken=2")


def test_takes_an_organization_url_value() -> None:
    paginator = Paginator(OrganizationUrl.parse("HTTPS://ORG.crm.dynamics.com:443"))
    assert paginator.check(LINK) == LINK


@pytest.mark.parametrize(
    "link", ["https://org.crm.dynamics.com:99999/x", "https://org.crm.dynamics.com:abc/x"]
)
def test_check_refuses_a_link_with_an_invalid_port(link: str) -> None:
    with pytest.raises(UnsafeLinkError):
        Paginator(ORG).check(link)
