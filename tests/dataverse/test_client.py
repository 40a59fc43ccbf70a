"""The Web API client against a scripted fake ``requests.Session``: no network, no sleeps.

The fakes are in ``fake_session``: the session comes through the constructor's ``session_factory`` and
a recording ``FakeClock`` through ``clock``, so waits are recorded and the time never really passes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from hydration.dataverse.auth import TokenProvider
from hydration.dataverse.batch import Part
from hydration.dataverse.client import MAX_CLOCK_SKEW, ClientSettings, DataverseClient, RowCount
from hydration.dataverse.errors import (
    AuthError,
    DataverseError,
    NotFoundError,
    RequestError,
    ThrottledError,
    TransientError,
    UnsafeLinkError,
)

from .fake_session import (
    API,
    GUID,
    ORG,
    SERVER_TIME,
    Credential,
    FakeSession,
    Make,
    RecordingClock,
    Setup,
    answer,
    error,
)

# -- requests and headers --------------------------------------------------------------------------


def test_headers_and_url(fake: Setup) -> None:
    fake.script(answer(200, {"value": []}))
    fake.client.get_json(
        "contacts", kind="read", params={"$select": "contactid"}, Prefer="odata.maxpagesize=10"
    )
    (sent,) = fake.sent
    assert sent.method == "GET"
    assert sent.url == ORG + "/api/data/v9.2/contacts"
    assert sent.headers == {
        "Authorization": "Bearer token-1",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
        "Prefer": "odata.maxpagesize=10",
    }
    assert sent.kwargs["params"] == {"$select": "contactid"}
    assert sent.kwargs["timeout"] == ClientSettings().timeout
    assert sent.kwargs["allow_redirects"] is False


@pytest.mark.parametrize("path", ["contacts(x)", "/contacts(x)"])
def test_relative_paths_resolve_against_the_api_root(fake: Setup, path: str) -> None:
    fake.script(answer(204))
    fake.client.request("PATCH", path, kind="write", json_body={"a": 1})
    assert fake.sent[0].url == "https://org.crm.dynamics.com/api/data/v9.2/contacts(x)"
    assert fake.sent[0].kwargs["json"] == {"a": 1}


def test_organization_url_is_normalised(make: Make) -> None:
    setup = make(organization_url="HTTPS://Org.CRM.dynamics.com:443/")
    assert setup.client.organization_url == ORG
    assert setup.client.api_url == API


@pytest.mark.parametrize(
    "url", ["https://org.crm.dynamics.com/main.aspx?appid=1", "https://user:pw@org.crm.dynamics.com"]
)
def test_an_organization_url_with_more_than_an_origin_is_refused(make: Make, url: str) -> None:
    with pytest.raises(ValueError, match="not an organization URL") as caught:
        make(organization_url=url)
    assert "pw" not in str(caught.value)
    assert "appid" not in str(caught.value)


def test_timeout_comes_from_settings(make: Make) -> None:
    setup = make(ClientSettings(timeout=7.5))
    setup.script(answer(200, {}))
    setup.client.get_json("WhoAmI", kind="whoami")
    assert setup.sent[0].kwargs["timeout"] == 7.5


def test_token_is_cached_across_requests(fake: Setup) -> None:
    fake.script(answer(200, {}), answer(200, {}))
    fake.client.get_json("a", kind="read")
    fake.client.get_json("b", kind="read")
    assert fake.credential.calls == 1
    assert all(s.headers["Authorization"] == "Bearer token-1" for s in fake.sent)


def test_session_is_made_once_per_thread(make: Make) -> None:
    made: list[FakeSession] = []

    def factory() -> requests.Session:
        session = FakeSession()
        session.script.extend([answer(200, {}), answer(200, {})])
        made.append(session)
        return session

    client = DataverseClient(
        organization_url=ORG,
        tokens=TokenProvider(Credential(), ORG),
        clock=RecordingClock(),
        session_factory=factory,
    )
    client.get_json("a", kind="read")
    client.get_json("b", kind="read")
    assert len(made) == 1
    assert len(made[0].sent) == 2


# -- success ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "counted"),
    [
        (b"42", RowCount(rows=42, at_least=False)),
        (b"\xef\xbb\xbf4999\r\n", RowCount(rows=4999, at_least=False)),  # a BOM and a line end
        (b"5000", RowCount(rows=5000, at_least=True)),  # Dataverse's cap: more rows may exist
    ],
)
def test_a_count_reads_the_plain_number_and_says_when_it_is_capped(
    fake: Setup, body: bytes, counted: RowCount
) -> None:
    fake.script(answer(200, body))
    assert fake.client.count("contacts", kind="count", where="statecode eq 0") == counted
    assert fake.sent[0].kwargs["params"] == {"$filter": "statecode eq 0"}


def test_a_count_that_is_not_a_number_is_a_transient_error(fake: Setup) -> None:
    fake.script(answer(200, {"value": []}))
    with pytest.raises(TransientError, match="not a count"):
        fake.client.count("contacts", kind="count")


def test_200_is_returned(fake: Setup) -> None:
    fake.script(answer(200, {"UserId": GUID}))
    response = fake.client.request("GET", "WhoAmI", kind="whoami")
    assert response.status_code == 200
    assert response.json() == {"UserId": GUID}
    assert fake.client.counters.requests == 1
    assert fake.client.counters.by_kind == {"whoami": 1}
    assert fake.clock.waits == []


def test_get_json_of_a_non_json_answer_is_transient(fake: Setup) -> None:
    fake.script(answer(200, b"<html>sign in</html>"))
    with pytest.raises(TransientError, match="not JSON"):
        fake.client.get_json("contacts", kind="read")


def test_whoami(fake: Setup) -> None:
    fake.script(answer(200, {"UserId": GUID, "OrganizationId": GUID}))
    assert fake.client.whoami() == {"UserId": GUID, "OrganizationId": GUID}
    assert fake.sent[0].url == API + "WhoAmI"


# -- transient failures ----------------------------------------------------------------------------


def test_503_then_200_is_retried_once_with_backoff(fake: Setup) -> None:
    fake.script(error(503), answer(200, {"ok": True}))
    assert fake.client.get_json("contacts", kind="read") == {"ok": True}
    assert len(fake.sent) == 2
    (wait,) = fake.clock.waits
    assert 0.5 <= wait <= 1.0  # the first backoff step, jittered
    assert fake.client.counters.retries == 1
    assert fake.client.counters.requests == 2
    assert fake.client.counters.throttled == 0


def test_transient_retry_after_is_honoured(fake: Setup) -> None:
    fake.script(error(503, **{"Retry-After": "2"}), answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    assert fake.clock.waits == [2.0]


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_other_transient_statuses_are_retried(fake: Setup, status: int) -> None:
    fake.script(error(status), answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    assert len(fake.sent) == 2


def test_transient_beyond_max_retries_raises(make: Make) -> None:
    setup = make(ClientSettings(max_retries=2))
    setup.script(error(503), error(502), error(503, code="0x80044151", message="SQL timeout"))
    with pytest.raises(TransientError) as caught:
        setup.client.get_json("contacts", kind="read")
    assert caught.value.status == 503
    assert caught.value.code == "0x80044151"
    assert len(setup.sent) == 3
    assert len(setup.clock.waits) == 2
    assert setup.clock.waits[0] <= 1.0
    assert 1.0 <= setup.clock.waits[1] <= 2.0  # exponential


def test_default_max_retries(fake: Setup) -> None:
    fake.script(*[error(503) for _ in range(5)])
    with pytest.raises(TransientError):
        fake.client.get_json("contacts", kind="read")
    assert len(fake.sent) == 1 + ClientSettings().max_retries


@pytest.mark.parametrize("failure", [requests.ConnectionError("reset"), requests.Timeout("slow")])
def test_connection_error_is_retried(fake: Setup, failure: Exception) -> None:
    fake.script(failure, answer(200, {"ok": 1}))
    assert fake.client.get_json("contacts", kind="read") == {"ok": 1}
    assert len(fake.clock.waits) == 1
    assert fake.client.counters.requests == 1  # only answers are counted


def test_connection_errors_beyond_max_retries_raise_transient(make: Make) -> None:
    setup = make(ClientSettings(max_retries=3))
    setup.script(*[requests.ConnectionError(f"refused with {ORG} secret-ish detail") for _ in range(4)])
    with pytest.raises(TransientError, match="connection failed: ConnectionError") as caught:
        setup.client.get_json("contacts", kind="read")
    assert "secret-ish" not in str(caught.value)
    assert len(setup.sent) == 4
    assert len(setup.clock.waits) == 3


# -- throttling ------------------------------------------------------------------------------------


def test_short_429_is_waited_out_exactly(fake: Setup) -> None:
    fake.script(
        error(429, "0x80072322", "Number of requests exceeded", **{"Retry-After": "3"}), answer(200, {})
    )
    fake.client.get_json("contacts", kind="read")
    assert fake.clock.waits == [3.0]
    assert fake.client.counters.throttled == 1
    assert fake.client.counters.throttled_seconds == 3.0
    assert fake.client.counters.retries == 1
    assert len(fake.sent) == 2


def test_429_with_retry_after_zero_still_backs_off_between_attempts(fake: Setup) -> None:
    fake.script(*[error(429, "0x80072322", **{"Retry-After": "0"}) for _ in range(5)])
    with pytest.raises(ThrottledError):
        fake.client.get_json("contacts", kind="read")
    assert len(fake.sent) == 1 + ClientSettings().max_retries
    assert fake.clock.waits == [0.5, 1.0, 2.0, 4.0]  # never back to back: the exponential floor
    assert fake.client.counters.throttled_seconds == 7.5


def test_429_without_retry_after_waits_five_seconds(fake: Setup) -> None:
    fake.script(error(429), answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    assert fake.clock.waits == [5.0]


def test_429_at_the_inline_limit_is_waited(fake: Setup) -> None:
    fake.script(error(429, **{"Retry-After": "20"}), answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    assert fake.clock.waits == [20.0]


def test_long_429_raises_without_sleeping(fake: Setup) -> None:
    fake.script(error(429, "0x80072321", "Combined execution time exceeded", **{"Retry-After": "60"}))
    with pytest.raises(ThrottledError) as caught:
        fake.client.get_json("contacts", kind="read")
    assert caught.value.retry_after == 60.0
    assert caught.value.code == "0x80072321"
    assert fake.clock.waits == []
    assert len(fake.sent) == 1
    assert fake.client.counters.throttled == 0


def test_inline_throttle_limit_is_a_setting(make: Make) -> None:
    setup = make(ClientSettings(inline_throttle_limit=2.0))
    setup.script(error(429, **{"Retry-After": "3"}))
    with pytest.raises(ThrottledError):
        setup.client.get_json("contacts", kind="read")
    assert setup.clock.waits == []


def test_throttling_beyond_max_retries_raises_throttled(make: Make) -> None:
    setup = make(ClientSettings(max_retries=2))
    setup.script(*[error(429, **{"Retry-After": "1"}) for _ in range(3)])
    with pytest.raises(ThrottledError) as caught:
        setup.client.get_json("contacts", kind="read")
    assert caught.value.retry_after == 1.0
    assert setup.clock.waits == [1.0, 1.0]
    assert setup.client.counters.throttled_seconds == 2.0


# -- authentication --------------------------------------------------------------------------------


def test_401_once_refreshes_the_token_and_retries(fake: Setup) -> None:
    fake.script(error(401, "0x80040220", "token expired"), answer(200, {"ok": True}))
    assert fake.client.get_json("contacts", kind="read") == {"ok": True}
    assert [s.headers["Authorization"] for s in fake.sent] == ["Bearer token-1", "Bearer token-2"]
    assert fake.credential.calls == 2
    assert fake.clock.waits == []


def test_401_twice_is_an_auth_error(fake: Setup) -> None:
    fake.script(error(401), error(401))
    with pytest.raises(AuthError) as caught:
        fake.client.get_json("contacts", kind="read")
    assert caught.value.status == 401
    assert len(fake.sent) == 2
    assert fake.clock.waits == []
    assert "token-" not in str(caught.value)


def test_403_is_not_retried(fake: Setup) -> None:
    fake.script(error(403, "0x80040220", "missing prvReadContact"))
    with pytest.raises(AuthError, match="prvReadContact"):
        fake.client.get_json("contacts", kind="read")
    assert len(fake.sent) == 1
    assert fake.credential.calls == 1


# -- fatal answers ---------------------------------------------------------------------------------


def test_404_is_not_found_without_retry(fake: Setup) -> None:
    fake.script(error(404, "0x80060888", "Resource not found for the segment 'contactz'"))
    with pytest.raises(NotFoundError) as caught:
        fake.client.get_json("contactz", kind="read")
    assert caught.value.status == 404
    assert caught.value.code == "0x80060888"
    assert len(fake.sent) == 1
    assert fake.clock.waits == []
    assert fake.client.counters.retries == 0


@pytest.mark.parametrize("status", [400, 412, 413])
def test_client_errors_are_request_errors(fake: Setup, status: int) -> None:
    fake.script(error(status))
    with pytest.raises(RequestError):
        fake.client.request("PATCH", "contacts(x)", kind="write", json_body={})
    assert len(fake.sent) == 1


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_is_not_a_success(fake: Setup, status: int) -> None:
    fake.script(answer(status, headers={"Location": "https://login.example.com/"}))
    with pytest.raises(DataverseError):
        fake.client.request(
            "POST", "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", kind="write", json_body={}
        )


# -- server time and parallelism -------------------------------------------------------------------


def test_server_now_follows_the_date_header(fake: Setup) -> None:
    fake.script(answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    assert fake.client.server_now() == SERVER_TIME
    fake.clock.advance(7.5)
    assert fake.client.server_now() == SERVER_TIME + timedelta(seconds=7.5)
    assert fake.client.server_now().tzinfo is not None
    assert len(fake.sent) == 1  # recent enough: no WhoAmI


def test_server_now_moves_with_the_monotonic_clock(fake: Setup) -> None:
    fake.script(answer(200, {}))
    fake.client.get_json("contacts", kind="read")
    readings = [fake.client.server_now() for _ in range(3)]
    assert readings == sorted(readings)


def test_server_now_asks_whoami_when_nothing_was_read_yet(fake: Setup) -> None:
    fake.script(answer(200, {"UserId": GUID}, date=SERVER_TIME + timedelta(hours=1)))
    now = fake.client.server_now()
    assert fake.sent[0].url == API + "WhoAmI"
    assert now >= SERVER_TIME + timedelta(hours=1)
    assert fake.client.counters.by_kind == {"whoami": 1}


def test_server_now_asks_afresh_when_older_than_max_age(fake: Setup) -> None:
    later = SERVER_TIME + timedelta(minutes=10)
    fake.script(answer(200, {}), answer(200, {"UserId": GUID}, date=later))
    fake.client.get_json("contacts", kind="read")
    now = fake.client.server_now(max_age=-1.0)  # any reading is too old
    assert [s.url for s in fake.sent] == [API + "contacts", API + "WhoAmI"]
    assert later <= now < later + timedelta(seconds=5)


def test_server_time_comes_from_any_answer_even_an_error(fake: Setup) -> None:
    later = SERVER_TIME + timedelta(minutes=1)
    fake.script(answer(404, {"error": {"code": "x", "message": "y"}}, date=later))
    with pytest.raises(NotFoundError):
        fake.client.get_json("contacts(x)", kind="read")
    assert fake.client.server_now() >= later
    assert len(fake.sent) == 1


def test_unparsable_date_is_ignored(fake: Setup) -> None:
    fake.script(answer(200, {}), answer(200, {}, date=None, headers={"Date": "yesterday-ish"}))
    fake.client.get_json("a", kind="read")
    fake.client.get_json("b", kind="read")
    now = fake.client.server_now()
    assert SERVER_TIME <= now < SERVER_TIME + timedelta(seconds=5)


def test_a_date_far_ahead_of_the_host_clock_is_ignored_and_logged(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    host = SERVER_TIME + timedelta(minutes=1)
    setup = make(clock=RecordingClock(host))
    year_ahead = host + timedelta(days=365)
    setup.script(answer(200, {}), answer(200, {"UserId": GUID}, date=year_ahead))
    setup.client.get_json("contacts", kind="read")
    setup.clock.advance(61)
    with caplog.at_level("WARNING", logger="hydration.dataverse.client"):
        now = setup.client.server_now()  # too old: asks WhoAmI, whose Date is a year ahead
    assert now == SERVER_TIME + timedelta(seconds=61)  # the earlier reading, moved on by the host
    assert "ahead of this host's clock" in caplog.text


def test_only_a_future_date_answers_give_no_server_time(make: Make) -> None:
    setup = make(clock=RecordingClock(SERVER_TIME))
    setup.script(answer(200, {"UserId": GUID}, date=SERVER_TIME + timedelta(minutes=6)))
    with pytest.raises(TransientError, match="no usable Date"):
        setup.client.server_now()


def test_the_local_emulator_may_be_ahead_of_the_host(make: Make) -> None:
    # its control API moves its clock on purpose (to let mapping changes settle without waiting)
    setup = make(organization_url="http://127.0.0.1:8765", clock=RecordingClock(SERVER_TIME))
    ahead = SERVER_TIME + timedelta(hours=2)
    setup.script(answer(200, {"UserId": GUID}, date=ahead))
    assert setup.client.server_now() == ahead


def test_a_date_within_the_allowed_skew_is_used(make: Make) -> None:
    setup = make(clock=RecordingClock(SERVER_TIME))
    ahead = SERVER_TIME + MAX_CLOCK_SKEW - timedelta(seconds=1)
    setup.script(answer(200, {"UserId": GUID}, date=ahead))
    assert setup.client.server_now() == ahead


def test_server_now_without_a_date_header_is_transient(fake: Setup) -> None:
    fake.script(answer(200, {"UserId": GUID}, date=None))
    with pytest.raises(TransientError):
        fake.client.server_now()


def test_dop_hint(fake: Setup) -> None:
    hints = [fake.client.dop_hint]
    fake.script(
        answer(200, {}, headers={"x-ms-dop-hint": "8"}),
        answer(200, {}, headers={"X-MS-DOP-HINT": "0"}),
        answer(200, {}, headers={"x-ms-dop-hint": "many"}),
        answer(200, {}),
        answer(200, {}, headers={"x-ms-dop-hint": "12"}),
    )
    for _ in range(5):
        fake.client.get_json("a", kind="read")
        hints.append(fake.client.dop_hint)
    # zero, junk and absent hints keep the last good one
    assert hints == [None, 8, 8, 8, 8, 12]


# -- paging ----------------------------------------------------------------------------------------

NEXT = API + "contacts?$select=contactid&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"


def test_pages_follow_next_links_exactly(fake: Setup) -> None:
    third = NEXT.replace("%222%22", "%223%22")
    fake.script(
        answer(200, {"value": [{"contactid": "1"}], "@odata.nextLink": NEXT}),
        answer(200, {"value": [{"contactid": "2"}], "@odata.nextLink": third}),
        answer(200, {"value": []}),
    )
    pages = list(fake.client.pages("contacts", params={"$select": "contactid"}, page_size=500, kind="read"))
    assert pages == [([{"contactid": "1"}], NEXT), ([{"contactid": "2"}], third), ([], None)]
    assert [s.url for s in fake.sent] == [API + "contacts", NEXT, third]
    assert fake.sent[0].kwargs["params"] == {"$select": "contactid"}
    assert all(s.kwargs["params"] is None for s in fake.sent[1:])  # the link already holds the query
    assert all(s.headers["Prefer"] == "odata.maxpagesize=500" for s in fake.sent)


def test_pages_resume_from_a_saved_link(fake: Setup) -> None:
    fake.script(answer(200, {"value": [{"contactid": "2"}]}))
    pages = list(fake.client.pages("contacts", params={}, page_size=10, kind="read", start=NEXT))
    assert pages == [([{"contactid": "2"}], None)]
    assert [s.url for s in fake.sent] == [NEXT]


def test_pages_refuse_a_foreign_next_link_before_sending_to_it(fake: Setup) -> None:
    evil = "https://evil.example.com/api/data/v9.2/contacts?$skiptoken=1"
    fake.script(answer(200, {"value": [{"contactid": "1"}], "@odata.nextLink": evil}))
    with pytest.raises(UnsafeLinkError):
        list(fake.client.pages("contacts", params={}, page_size=10, kind="read"))
    assert [s.url for s in fake.sent] == [API + "contacts"]


def test_pages_refuse_a_foreign_start_link_without_sending_anything(fake: Setup) -> None:
    with pytest.raises(UnsafeLinkError):
        list(
            fake.client.pages(
                "contacts", params={}, page_size=10, kind="read", start="http://org.crm.dynamics.com/x"
            )
        )
    assert fake.sent == []


def test_pages_without_a_value_list_are_transient(fake: Setup) -> None:
    fake.script(answer(200, {"error": "odd"}))
    with pytest.raises(TransientError, match="'value'"):
        list(fake.client.pages("contacts", params={}, page_size=10, kind="read"))


def test_pages_retry_a_failed_page(fake: Setup) -> None:
    fake.script(
        answer(200, {"value": [{"contactid": "1"}], "@odata.nextLink": NEXT}),
        error(503),
        answer(200, {"value": [{"contactid": "2"}]}),
    )
    pages = list(fake.client.pages("contacts", params={}, page_size=10, kind="read"))
    assert [rows for rows, _ in pages] == [[{"contactid": "1"}], [{"contactid": "2"}]]
    assert [s.url for s in fake.sent] == [API + "contacts", NEXT, NEXT]


# -- write headers ---------------------------------------------------------------------------------


def test_write_headers_off_by_default(fake: Setup) -> None:
    assert fake.client.write_headers() == {}


def test_write_headers_from_settings(make: Make) -> None:
    setup = make(ClientSettings(bypass_business_logic="CustomSync,CustomAsync", suppress_flows=True))
    assert setup.client.write_headers() == {
        "MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync",
        "MSCRM.SuppressCallbackRegistrationExpanderJob": "true",
    }


def test_write_headers_are_sent_when_passed(make: Make) -> None:
    setup = make(ClientSettings(suppress_flows=True))
    setup.script(answer(204))
    setup.client.request(
        "PATCH", "contacts(x)", kind="write", json_body={}, headers=setup.client.write_headers()
    )
    assert setup.sent[0].headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] == "true"
    assert "MSCRM.BypassBusinessLogicExecution" not in setup.sent[0].headers


# -- batches ---------------------------------------------------------------------------------------

BOUNDARY = "batchresponse_6f7c8d2e-1a2b-4c3d-9e8f-001122334455"


def batch_answer(*statuses: int) -> requests.Response:
    lines: list[str] = []
    for status in statuses:
        lines += [f"--{BOUNDARY}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", ""]
        if status == 200:
            lines += [
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                "",
                '{"value": [{"contactid": "1"}]}',
            ]
        else:
            lines += [f"HTTP/1.1 {status} Status", "OData-Version: 4.0", "", ""]
    lines += [f"--{BOUNDARY}--", ""]
    return answer(
        200,
        "\r\n".join(lines).encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"},
    )


def test_batch_builds_sends_and_parses(fake: Setup) -> None:
    fake.script(batch_answer(200, 204, 404))
    parts = [
        Part("GET", "contacts?$select=contactid"),
        Part("PATCH", f"contacts({GUID})", {"a@odata.bind": "x(1)"}, {"If-Match": "*"}),
        Part("DELETE", f"contacts({GUID})/nav/$ref"),
    ]
    results = fake.client.batch(parts, kind="write_batch")
    assert [r.status for r in results] == [200, 204, 404]
    assert results[0].json() == {"value": [{"contactid": "1"}]}
    (sent,) = fake.sent
    assert sent.method == "POST"
    assert sent.url == API + "$batch"
    assert sent.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    body = sent.kwargs["data"].decode()
    assert "GET /api/data/v9.2/contacts?$select=contactid HTTP/1.1\r\n" in body
    assert f"PATCH /api/data/v9.2/contacts({GUID}) HTTP/1.1\r\n" in body
    assert "If-Match: *\r\n" in body
    assert fake.client.counters.by_kind == {"write_batch": 1}


def test_batch_with_fewer_answers_than_requests_is_transient(fake: Setup) -> None:
    fake.script(batch_answer(204))
    with pytest.raises(TransientError, match="1 parts for 2 requests"):
        fake.client.batch([Part("GET", "a"), Part("GET", "b")], kind="read_batch")


def test_batch_without_continue_on_error(fake: Setup) -> None:
    fake.script(batch_answer(400))  # the first failure stopped the batch
    results = fake.client.batch(
        [Part("GET", "a"), Part("GET", "b")], kind="read_batch", continue_on_error=False
    )
    assert [r.status for r in results] == [400]
    assert "Prefer" not in fake.sent[0].headers


def test_batch_answer_that_is_not_multipart_is_transient(fake: Setup) -> None:
    fake.script(answer(200, {"value": []}))
    with pytest.raises(TransientError, match="not multipart"):
        fake.client.batch([Part("GET", "a")], kind="read_batch")


def test_batch_is_retried_like_any_request(fake: Setup) -> None:
    fake.script(error(503), batch_answer(204))
    assert [r.status for r in fake.client.batch([Part("GET", "a")], kind="read_batch")] == [204]
    assert len(fake.sent) == 2
    assert fake.sent[0].kwargs["data"] == fake.sent[1].kwargs["data"]


# -- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "org.crm.dynamics.com",
        "ftp://org.crm.dynamics.com",
        "https://",
        "file:///etc/passwd",
        "https:///x",
    ],
)
def test_invalid_organization_url(make: Make, url: str) -> None:
    with pytest.raises(ValueError, match="not an organization URL"):
        make(organization_url=url)
