"""The classifier: one HTTP answer in, one outcome (and the exception to raise) out."""

from __future__ import annotations

import json

import pytest
from requests.structures import CaseInsensitiveDict

from hydration.dataverse.errors import (
    AuthError,
    Classified,
    DataverseError,
    FatalError,
    NotFoundError,
    RequestError,
    RetriableError,
    ThrottledError,
    TransientError,
    Verdict,
    classify,
    error_details,
    parse_retry_after,
)


def headers(**values: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in values.items()})


def error_body(code: str = "0x80040217", message: str = "contact With Id = x Does Not Exist") -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


# -- OK --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204])
def test_success_is_ok(status: int) -> None:
    result = classify(status, headers(), b"")
    assert result == Classified(Verdict.OK, status)


# -- throttling ------------------------------------------------------------------------------------


def test_429_with_retry_after() -> None:
    result = classify(429, headers(Retry_After="7"), error_body("0x80072322", "Number of requests exceeded"))
    assert result.verdict is Verdict.THROTTLED
    assert result.retry_after == 7.0
    assert result.code == "0x80072322"
    error = result.error()
    assert isinstance(error, ThrottledError)
    assert isinstance(error, RetriableError)
    assert error.retry_after == 7.0
    assert error.status == 429
    assert error.code == "0x80072322"


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert classify(429, CaseInsensitiveDict({"retry-after": "12"}), b"").retry_after == 12.0


def test_429_without_retry_after_waits_five_seconds() -> None:
    result = classify(429, headers(), b"")
    assert result.verdict is Verdict.THROTTLED
    assert result.retry_after == 5.0
    error = result.error()
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 5.0


@pytest.mark.parametrize("value", ["soon", "", "-3", "Wed, 21 Oct 2015 07:28:00 GMT", "nan"])
def test_429_with_a_bad_retry_after_waits_five_seconds(value: str) -> None:
    assert classify(429, headers(Retry_After=value), b"").retry_after == 5.0


def test_429_with_zero_retry_after_is_zero() -> None:
    assert classify(429, headers(Retry_After="0"), b"").retry_after == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), (" 10 ", 10.0), ("2.5", 2.5), ("0", 0.0), (None, None), ("x", None)]
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_refuses_negative() -> None:
    assert parse_retry_after("-1") is None


# -- transient -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses(status: int) -> None:
    result = classify(status, headers(), b"<html>Service Unavailable</html>")
    assert result.verdict is Verdict.TRANSIENT
    assert result.retry_after is None
    error = result.error()
    assert type(error) is TransientError
    assert isinstance(error, RetriableError)
    assert error.status == status


def test_transient_keeps_a_retry_after() -> None:
    assert classify(503, headers(Retry_After="4"), b"").retry_after == 4.0


# -- fatal -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, RequestError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (405, RequestError),
        (409, RequestError),
        (412, RequestError),
        (413, RequestError),
        (501, RequestError),
    ],
)
def test_fatal_statuses(status: int, kind: type[FatalError]) -> None:
    result = classify(status, headers(Retry_After="3"), error_body())
    assert result.verdict is Verdict.FATAL
    assert result.retry_after is None
    error = result.error()
    assert type(error) is kind
    assert isinstance(error, FatalError)
    assert not isinstance(error, RetriableError)
    assert error.status == status
    assert error.code == "0x80040217"


def test_error_text_names_status_code_and_message() -> None:
    error = classify(404, headers(), error_body("0x80040217", "contact Does Not Exist")).error()
    assert str(error) == "Dataverse answered 404 0x80040217: contact Does Not Exist"
    assert error.message == str(error)


def test_error_text_without_body() -> None:
    assert str(classify(403, headers(), b"").error()) == "Dataverse answered 403"


# -- error bodies ----------------------------------------------------------------------------------


def test_error_details_extracted() -> None:
    assert error_details(error_body("0x8004431a", "Principal user is missing privilege")) == (
        "0x8004431a",
        "Principal user is missing privilege",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>Bad gateway</body></html>",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'"error"',
        b'{"error": "flat string"}',
        b'{"message": "no error object"}',
        b"null",
    ],
)
def test_non_json_or_odd_bodies_are_tolerated(body: bytes) -> None:
    assert error_details(body) == (None, "")
    result = classify(400, headers(), body)
    assert result.code is None
    assert result.message == ""


def test_non_text_code_and_message_are_dropped() -> None:
    body = json.dumps({"error": {"code": 17, "message": ["x"]}}).encode()
    assert error_details(body) == (None, "")


def test_message_is_truncated() -> None:
    result = classify(400, headers(), error_body(message="x" * 5000))
    assert result.message == "x" * 500
    assert len(str(result.error())) < 600


def test_classify_accepts_a_plain_dict_of_headers() -> None:
    assert classify(429, {"Retry-After": "2"}, b"").retry_after == 2.0


# -- the tree --------------------------------------------------------------------------------------


def test_exception_tree() -> None:
    assert issubclass(RetriableError, DataverseError)
    assert issubclass(FatalError, DataverseError)
    assert issubclass(TransientError, RetriableError)
    assert issubclass(ThrottledError, RetriableError)
    for fatal in (AuthError, NotFoundError, RequestError):
        assert issubclass(fatal, FatalError)


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e400"])
def test_infinite_retry_after_is_refused(value: str) -> None:
    assert parse_retry_after(value) is None
