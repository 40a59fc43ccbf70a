"""The ``$batch`` wire format: requests built by hand, answers read with the email parser."""

from __future__ import annotations

import json
import re
import tracemalloc

import pytest

from hydration.dataverse.batch import MAX_REQUESTS, Part, PartResult, build, parse
from hydration.dataverse.errors import TransientError

API = "/api/data/v9.2/"
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


# -- build -----------------------------------------------------------------------------------------


def built(parts: list[Part]) -> tuple[str, str, str]:
    body, content_type = build(parts, API)
    match = re.fullmatch(r"multipart/mixed; boundary=(batch_[0-9a-f-]{36})", content_type)
    assert match, content_type
    return body.decode("utf-8"), content_type, match.group(1)


def test_content_type_names_the_boundary() -> None:
    text, _, boundary = built([Part("GET", "WhoAmI")])
    assert text.startswith(f"--{boundary}\r\n")
    assert text.endswith(f"--{boundary}--\r\n")


def test_each_batch_has_its_own_boundary() -> None:
    assert built([Part("GET", "WhoAmI")])[2] != built([Part("GET", "WhoAmI")])[2]


def test_lines_end_with_crlf_only() -> None:
    text, _, _ = built([Part("PATCH", f"contacts({GUID})", {"a": "b\nc"}), Part("GET", "WhoAmI")])
    assert "\n" not in text.replace("\r\n", "")
    assert "\r" not in text.replace("\r\n", "")


def test_get_part() -> None:
    text, _, boundary = built([Part("GET", "contacts?$select=contactid")])
    assert text == (
        f"--{boundary}\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "GET /api/data/v9.2/contacts?$select=contactid HTTP/1.1\r\n"
        "Accept: application/json\r\n"
        "\r\n"
        "\r\n"
        f"--{boundary}--\r\n"
    )


def test_patch_part_with_json_body_and_headers() -> None:
    body = {
        "msdynci_LookupField_CustomerProfile@odata.bind": f"msdynci_customerprofiles({GUID})",
        "name": "Zoë",
    }
    text, _, boundary = built([Part("PATCH", f"contacts({GUID})", body, {"If-Match": "*"})])
    chunks = text.split(f"--{boundary}")
    assert len(chunks) == 3  # preamble, one part, the closing "--"
    part = chunks[1]
    head, _, payload = part.partition("\r\n\r\n")
    assert head == "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary"
    request_head, _, request_body = payload.partition("\r\n\r\n")
    assert request_head.split("\r\n") == [
        f"PATCH /api/data/v9.2/contacts({GUID}) HTTP/1.1",
        "Accept: application/json",
        "If-Match: *",
        "Content-Type: application/json",
    ]
    assert json.loads(request_body.strip()) == body
    assert "\r\n" not in request_body.strip()  # compact JSON on one line


def test_part_headers_may_override_accept() -> None:
    text, _, _ = built([Part("GET", "x", headers={"Accept": "application/xml"})])
    assert "Accept: application/xml\r\n" in text
    assert "Accept: application/json" not in text


def test_parts_keep_their_order() -> None:
    parts = [Part("GET", f"contacts({i:08d}-0000-0000-0000-000000000000)") for i in range(5)]
    text, _, _ = built(parts)
    lines = [line for line in text.split("\r\n") if line.startswith("GET ")]
    assert lines == [f"GET {API}{p.path} HTTP/1.1" for p in parts]


def test_delete_ref_part_has_no_body_headers() -> None:
    text, _, _ = built([Part("DELETE", f"contacts({GUID})/msdynci_LookupField_CustomerProfile/$ref")])
    assert f"DELETE {API}contacts({GUID})/msdynci_LookupField_CustomerProfile/$ref HTTP/1.1" in text
    assert "Content-Type: application/json" not in text


def test_max_requests() -> None:
    body, _ = build([Part("GET", "WhoAmI")] * MAX_REQUESTS, API)
    assert body.count(b"GET /api/data/v9.2/WhoAmI HTTP/1.1") == MAX_REQUESTS


@pytest.mark.parametrize("count", [0, MAX_REQUESTS + 1])
def test_empty_or_oversized_batch_refused(count: int) -> None:
    with pytest.raises(ValueError, match=f"1 to {MAX_REQUESTS}"):
        build([Part("GET", "WhoAmI")] * count, API)


# -- parse -----------------------------------------------------------------------------------------

BATCH = "batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f"
CHANGESET = "changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc"
ORG = "https://org.crm.dynamics.com/api/data/v9.2/"

ROWS = {
    "@odata.context": ORG + "$metadata#contacts(contactid)",
    "value": [{"contactid": GUID, "name": "Zoë"}],
}
FAILURE = {"error": {"code": "0x80040217", "message": "contact With Id = x Does Not Exist"}}

RESPONSE_LINES = [
    f"--{BATCH}",
    f"Content-Type: multipart/mixed; boundary={CHANGESET}",
    "",
    f"--{CHANGESET}",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 1",
    "",
    "HTTP/1.1 204 No Content",
    "OData-Version: 4.0",
    f"Location: {ORG}contacts({GUID})",
    f"OData-EntityId: {ORG}contacts({GUID})",
    "",
    "",
    f"--{CHANGESET}",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 2",
    "",
    "HTTP/1.1 204 No Content",
    "OData-Version: 4.0",
    "",
    "",
    f"--{CHANGESET}--",
    f"--{BATCH}",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "",
    "HTTP/1.1 200 OK",
    "Content-Type: application/json; odata.metadata=minimal",
    "OData-Version: 4.0",
    "",
    json.dumps(ROWS, ensure_ascii=False),
    f"--{BATCH}",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "",
    "HTTP/1.1 404 Not Found",
    "Content-Type: application/json; odata.metadata=minimal",
    "OData-Version: 4.0",
    "",
    json.dumps(FAILURE),
    f"--{BATCH}--",
    "",
]
CONTENT_TYPE = f"multipart/mixed; boundary={BATCH}"


def check_results(results: list[PartResult]) -> None:
    assert [r.status for r in results] == [204, 204, 200, 404]
    first, second, rows, failure = results
    assert first.body == b""
    assert first.headers["odata-entityid"] == f"{ORG}contacts({GUID})"
    assert first.headers["location"] == f"{ORG}contacts({GUID})"
    assert second.body == b""
    assert rows.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert rows.json() == ROWS
    assert failure.json() == FAILURE


def test_parse_dataverse_answer_with_a_change_set() -> None:
    body = "\r\n".join(RESPONSE_LINES).encode("utf-8")
    check_results(parse(body, CONTENT_TYPE))


def test_parse_lf_only_answer() -> None:
    body = "\n".join(RESPONSE_LINES).encode("utf-8")
    check_results(parse(body, CONTENT_TYPE))


def test_parse_keeps_utf8_bodies() -> None:
    body = "\r\n".join(RESPONSE_LINES).encode("utf-8")
    rows = parse(body, CONTENT_TYPE)[2]
    assert "Zoë".encode() in rows.body
    assert rows.json()["value"][0]["name"] == "Zoë"


def test_parse_quoted_boundary_parameter() -> None:
    body = "\r\n".join(RESPONSE_LINES).encode("utf-8")
    check_results(parse(body, f'multipart/mixed; boundary="{BATCH}"'))


def test_parse_single_answer() -> None:
    lines = [
        f"--{BATCH}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "HTTP/1.1 200 OK",
        "Content-Type: application/json",
        "",
        '{"UserId": "x"}',
        f"--{BATCH}--",
    ]
    (result,) = parse("\r\n".join(lines).encode(), CONTENT_TYPE)
    assert result.status == 200
    assert result.json() == {"UserId": "x"}


@pytest.mark.parametrize("content_type", ["", "application/json", "text/plain; charset=utf-8"])
def test_non_multipart_answer_is_transient(content_type: str) -> None:
    with pytest.raises(TransientError, match="not multipart"):
        parse(json.dumps(FAILURE).encode(), content_type)


def test_part_without_status_line_is_transient() -> None:
    lines = [
        f"--{BATCH}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "this is not an HTTP answer",
        "",
        f"--{BATCH}--",
    ]
    with pytest.raises(TransientError, match="status line"):
        parse("\r\n".join(lines).encode(), CONTENT_TYPE)


def test_built_request_is_a_valid_multipart_message() -> None:
    # the reader understands what the writer writes (a sanity check of both boundaries)
    body, content_type = build([Part("GET", "WhoAmI"), Part("GET", "WhoAmI")], API)
    with pytest.raises(TransientError, match="status line"):
        parse(body, content_type)  # the parts are requests, not answers


def test_parse_ignores_a_preamble_and_an_epilogue() -> None:
    body = "\r\n".join(["a preamble line", *RESPONSE_LINES, "an epilogue"]).encode()
    check_results(parse(body, CONTENT_TYPE))


def test_parse_splits_only_at_delimiters_that_start_a_line() -> None:
    rows = {"value": [{"name": f"not a delimiter: --{BATCH}"}]}
    lines = [
        f"--{BATCH}",
        "Content-Type: application/http",
        "",
        "HTTP/1.1 200 OK",
        "",
        json.dumps(rows),
        f"--{BATCH}--",
        "",
    ]
    (result,) = parse("\r\n".join(lines).encode(), CONTENT_TYPE)
    assert result.json() == rows


@pytest.mark.parametrize(
    "body",
    [
        "\r\n".join(RESPONSE_LINES[:-2]),  # no closing delimiter
        "no boundary at all",
        f"--{BATCH}",  # a delimiter line that never ends
        f"--{BATCH}--\r\n",  # closed at once: no part
    ],
)
def test_a_cut_or_empty_answer_is_transient(body: str) -> None:
    with pytest.raises(TransientError):
        parse(body.encode(), CONTENT_TYPE)


def test_parse_keeps_memory_near_the_answers_size() -> None:
    """Parsing copies the answer about once (the ``email`` parser kept six copies)."""
    rows = {"value": [{"contactid": GUID, "_parentcustomerid_value": GUID} for _ in range(5000)]}
    part = ["Content-Type: application/http", "", "HTTP/1.1 200 OK", "", json.dumps(rows)]
    body = "\r\n".join([*(f"--{BATCH}\r\n" + "\r\n".join(part) for _ in range(4)), f"--{BATCH}--", ""])
    raw = body.encode()
    tracemalloc.start()
    try:
        results = parse(raw, CONTENT_TYPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(results) == 4
    assert peak < 2.5 * len(raw)
