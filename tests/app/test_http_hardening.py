"""The HTTP functions on hostile or odd input: clear 4xx/5xx answers, no crash, no echo, safe headers.

None of these needs the emulator or Azurite: each answer is decided before any service is reached.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydration import handlers
from hydration.messages import MessageError, TaskMessage, is_run_id
from hydration.status_page import HTML_HEADERS, render_page
from tests.functions import app_functions

NOT_A_DATE = ["20260230T000000Z-00000000", "20261301T000000Z-00000000", "20260101T250000Z-00000000"]
SECRET_ENV = {
    "DATAVERSE_URL": "https://admin:hunter2@contoso.crm.dynamics.com",
    "HYDRATION_MANIFEST": json.dumps({"version": 1}),
    "HYDRATION_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net/?sv=2022&sig=S3CRET",
}


def status_function(params: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url="http://localhost/api/status", body=b"", params=params)
    response: func.HttpResponse = app_functions()["status"].get_user_function()(request)
    return response


# -- run ids that name no real moment --------------------------------------------------------------


@pytest.mark.parametrize("run_id", NOT_A_DATE)
def test_a_run_id_with_no_real_date_is_a_400_not_a_crash(run_id: str) -> None:
    assert not is_run_id(run_id)
    status, body = handlers.on_status_request({"run": run_id}, env={})
    assert status == 400
    assert "run must be a run id" in body["error"]
    html_status, page = handlers.on_status_page({"run": run_id}, env={})
    assert html_status == 400
    assert "run must be a run id" in page


@pytest.mark.parametrize("run_id", NOT_A_DATE)
def test_a_run_id_with_no_real_date_through_the_function(run_id: str) -> None:
    assert status_function({"run": run_id}).status_code == 400
    assert status_function({"run": run_id, "format": "html"}).status_code == 400


@pytest.mark.parametrize("run_id", NOT_A_DATE)
def test_a_message_naming_such_a_run_is_rejected(run_id: str) -> None:
    text = json.dumps({"v": 1, "kind": "hydrate", "run": run_id, "table": "contact", "seq": 0})
    with pytest.raises(MessageError, match="invalid run id"):
        TaskMessage.decode(text)


def test_real_run_ids_still_pass() -> None:
    assert is_run_id("20261129T021500Z-1a2b3c4d")
    assert is_run_id("20240229T235959Z-0123456789ab")  # a leap day


# -- settings errors never echo secrets ------------------------------------------------------------


def test_a_settings_error_answer_redacts_passwords_and_signatures() -> None:
    status, body = handlers.on_runs_request(b"{}", env=SECRET_ENV)
    assert status == 500
    text = json.dumps(body)
    assert "DATAVERSE_URL" in text
    assert "hunter2" not in text
    assert "S3CRET" not in text
    status, body = handlers.on_status_request({}, env=SECRET_ENV)
    assert status == 500
    assert "hunter2" not in json.dumps(body)


def test_a_malformed_storage_connection_string_is_a_settings_answer() -> None:
    env = {**SECRET_ENV, "DATAVERSE_URL": "https://contoso.crm.dynamics.com"}
    del env["HYDRATION_STORAGE__queueServiceUri"]
    status, body = handlers.on_runs_request(b"{}", env={**env, "HYDRATION_STORAGE": "AccountName=x"})
    assert status == 500
    assert any("HYDRATION_STORAGE is not a storage connection string" in p for p in body["problems"])


# -- headers ---------------------------------------------------------------------------------------


def test_html_answers_carry_the_security_headers() -> None:
    response = status_function({"format": "html", "limit": "0"})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    for name, value in HTML_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_json_answers_are_not_sniffed() -> None:
    response = status_function({"limit": "0"})
    assert response.status_code == 400
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_policy_allows_exactly_the_page_style() -> None:
    page = render_page({"task": "t", "group": "g", "generated": "now", "runs": []}, detailed=10)
    (style,) = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in HTML_HEADERS["Content-Security-Policy"]
    assert "<script" not in page


# -- property: no input makes a handler raise -------------------------------------------------------

PARAMS = st.dictionaries(
    st.sampled_from(["run", "limit", "format", "x"]),
    st.one_of(st.text(max_size=40), st.sampled_from(NOT_A_DATE), st.integers().map(str)),
    max_size=4,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    ).map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(["full", "tables", "plan", "other"]),
        st.one_of(st.booleans(), st.lists(st.text(max_size=8), max_size=3), st.text(max_size=8), st.none()),
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=150, deadline=None, database=None)
@given(PARAMS)
def test_any_status_query_is_answered_never_raised(params: dict[str, str]) -> None:
    status, body = handlers.on_status_request(params, env={})
    assert status in (400, 500)  # no settings here: a valid query meets the settings error
    assert isinstance(body["error"], str)
    page_status, page = handlers.on_status_page(params, env={})
    assert page_status == status
    assert "<script" not in page


@settings(max_examples=150, deadline=None, database=None)
@given(BODIES)
def test_any_runs_body_is_answered_never_raised(body: bytes) -> None:
    status, answer = handlers.on_runs_request(body, env={})
    assert status in (400, 413, 500)
    assert isinstance(answer["error"], str)
