"""Tests for the ``$batch`` wire format: parsing requests, formatting responses, Content-ID references."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import random
import re
import uuid
from collections.abc import Callable

import pytest

from dataverse_emulator.batch import (
    BatchFormatError,
    ChangeSet,
    ChangeSetResponse,
    InnerRequest,
    InnerResponse,
    format_batch_response,
    parse_batch,
    resolve_content_id,
)

ACCOUNT = "00000000-0000-0000-0000-000000000001"


def task_body(n: int) -> bytes:
    return (
        "{\n"
        f'  "subject": "Task {n} in batch",\n'
        f'  "regardingobjectid_account_task@odata.bind": "accounts({ACCOUNT})"\n'
        "}"
    ).encode()


def task_part(boundary: str, n: int, content_id: str | None = None) -> str:
    cid = f"Content-ID: {content_id}\n" if content_id else ""
    return (
        f"--{boundary}\n"
        "Content-Type: application/http\n"
        "Content-Transfer-Encoding: binary\n"
        f"{cid}"
        "\n"
        "POST /api/data/v9.2/tasks HTTP/1.1\n"
        "Content-Type: application/json; type=entry\n"
        "\n"
        f"{task_body(n).decode()}\n"
    )


GET_TASKS_URL = f"/api/data/v9.2/accounts({ACCOUNT})/Account_Tasks?$select=subject"

# The "batch request without change sets" example of the Microsoft documentation (LF line endings).
PLAIN_BOUNDARY = "batch_80dd1615-2a10-428a-bb6f-0e559792721f"
PLAIN_CONTENT_TYPE = f'multipart/mixed; boundary="{PLAIN_BOUNDARY}"'
PLAIN_BATCH = (
    "".join(task_part(PLAIN_BOUNDARY, n) for n in (1, 2, 3)) + f"--{PLAIN_BOUNDARY}\n"
    "Content-Type: application/http\n"
    "Content-Transfer-Encoding: binary\n"
    "\n"
    f"GET {GET_TASKS_URL} HTTP/1.1\n"
    "\n"
    "\n"
    f"--{PLAIN_BOUNDARY}--\n"
).encode()

# The change set example of the Microsoft documentation (LF line endings).
CS_BATCH_BOUNDARY = "batch_22975cad-7f57-410d-be15-6363209367ea"
CS_BOUNDARY = "changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a"
CS_CONTENT_TYPE = f'multipart/mixed; boundary="{CS_BATCH_BOUNDARY}"'
CS_BATCH = (
    f"--{CS_BATCH_BOUNDARY}\n"
    f'Content-Type: multipart/mixed; boundary="{CS_BOUNDARY}"\n'
    "\n" + "".join(task_part(CS_BOUNDARY, n, str(n)) for n in (1, 2, 3)) + f"--{CS_BOUNDARY}--\n"
    "\n"
    f"--{CS_BATCH_BOUNDARY}\n"
    "Content-Type: application/http\n"
    "Content-Transfer-Encoding: binary\n"
    "\n"
    f"GET {GET_TASKS_URL} HTTP/1.1\n"
    "\n"
    "\n"
    f"--{CS_BATCH_BOUNDARY}--\n"
).encode()

TASK_HEADERS = {"content-type": "application/json; type=entry"}


def same(data: bytes) -> bytes:
    return data


def expected_task(
    n: int, content_id: str | None = None, transform: Callable[[bytes], bytes] = same
) -> InnerRequest:
    return InnerRequest("POST", "/api/data/v9.2/tasks", TASK_HEADERS, transform(task_body(n)), content_id)


EXPECTED_GET = InnerRequest("GET", GET_TASKS_URL, {}, b"", None)


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def http_part(boundary: str, request: str, part_headers: str = "") -> str:
    return (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"{part_headers}\r\n{request}"
    )


def batch_of(boundary: str, *parts: str) -> bytes:
    return ("\r\n".join(parts) + f"\r\n--{boundary}--\r\n").encode()


def change_set(batch_boundary: str, boundary: str, *parts: str) -> str:
    return (
        f"--{batch_boundary}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n"
        + "\r\n".join(parts)
        + f"\r\n--{boundary}--"
    )


# Parsing the documented examples


@pytest.mark.parametrize("transform", [same, crlf], ids=["lf", "crlf"])
def test_documented_batch_without_change_sets(transform: Callable[[bytes], bytes]) -> None:
    items = parse_batch(transform(PLAIN_BATCH), PLAIN_CONTENT_TYPE)
    assert items == [expected_task(n, None, transform) for n in (1, 2, 3)] + [EXPECTED_GET]
    first = items[0]
    assert isinstance(first, InnerRequest)
    assert json.loads(first.body)["subject"] == "Task 1 in batch"
    assert first.header("CONTENT-TYPE") == "application/json; type=entry"
    assert first.header("Accept") is None


@pytest.mark.parametrize("transform", [same, crlf], ids=["lf", "crlf"])
def test_documented_batch_with_change_set(transform: Callable[[bytes], bytes]) -> None:
    items = parse_batch(transform(CS_BATCH), CS_CONTENT_TYPE)
    assert items == [
        ChangeSet(tuple(expected_task(n, str(n), transform) for n in (1, 2, 3)), CS_BOUNDARY),
        EXPECTED_GET,
    ]


def test_unquoted_boundary_and_case_insensitive_media_type() -> None:
    content_type = f"Multipart/Mixed;boundary={CS_BATCH_BOUNDARY}"
    assert parse_batch(CS_BATCH, content_type) == parse_batch(CS_BATCH, CS_CONTENT_TYPE)


def test_quoted_boundary_with_space_and_escapes() -> None:
    boundary = "batch_a b'c(d)"
    content_type = 'multipart/mixed; charset=utf-8; boundary="batch_a b\\\'c(d)" ;'
    body = batch_of(boundary, http_part(boundary, "DELETE contacts(1) HTTP/1.1\r\n\r\n"))
    assert parse_batch(body, content_type) == [InnerRequest("DELETE", "contacts(1)", {}, b"", None)]


def test_urls_are_kept_as_written_and_content_id_outside_change_set() -> None:
    boundary = "batch_urls"
    absolute = f"https://org.crm.dynamics.com/api/data/v9.2/contacts({ACCOUNT})"
    body = batch_of(
        boundary,
        http_part(
            boundary, f"GET {absolute} HTTP/1.1\r\nAccept: application/json\r\n\r\n", "Content-ID: 7\r\n"
        ),
        http_part(boundary, f"GET contacts({ACCOUNT})?$select=fullname HTTP/1.1\r\n"),
    )
    items = parse_batch(body, f"multipart/mixed; boundary={boundary}")
    assert items == [
        InnerRequest("GET", absolute, {"accept": "application/json"}, b"", "7"),
        InnerRequest("GET", f"contacts({ACCOUNT})?$select=fullname", {}, b"", None),
    ]


def test_body_is_byte_exact_and_survives_boundary_lookalikes() -> None:
    boundary = "batch_x"
    body = (
        b'{"a": "\r\n--batch_x_other\r\n--batch_xy\n--batch_x--tail\r\n--changeset_q\r\n"}\n'
        b"\xe2\x82\xac trailing spaces  \r\n"
    )
    raw = (
        http_part(boundary, "PATCH contacts(1) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n").encode()
        + body
        + b"\r\n--batch_x--"
    )
    [item] = parse_batch(raw, "multipart/mixed; boundary=batch_x")
    assert isinstance(item, InnerRequest)
    assert item.body == body


def test_preamble_epilogue_and_transport_padding_are_ignored() -> None:
    boundary = "batch_p"
    raw = (
        b"preamble text\r\n--batch_p \t\r\nContent-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nDELETE accounts(1) HTTP/1.1\r\n\r\n"
        b"\r\n--batch_p--  \r\nepilogue --batch_p\r\n"
    )
    assert parse_batch(raw, f"multipart/mixed; boundary={boundary}") == [
        InnerRequest("DELETE", "accounts(1)", {}, b"", None)
    ]


def test_repeated_inner_headers_are_joined() -> None:
    boundary = "batch_h"
    request = "PATCH a(1) HTTP/1.1\r\nPrefer: return=representation\r\nprefer: odata.x\r\n\r\n{}"
    [item] = parse_batch(
        batch_of(boundary, http_part(boundary, request)), "multipart/mixed; boundary=batch_h"
    )
    assert isinstance(item, InnerRequest)
    assert item.header("Prefer") == "return=representation, odata.x"
    assert item.body == b"{}"


def test_empty_batch_gives_no_items() -> None:
    assert parse_batch(b"--batch_e--\r\n", "multipart/mixed; boundary=batch_e") == []


# Limits


def requests_batch(boundary: str, top_level: int, in_change_set: int) -> bytes:
    post = "POST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}"
    parts = [http_part(boundary, "GET contacts HTTP/1.1\r\n\r\n") for _ in range(top_level)]
    if in_change_set:
        inner = [http_part("cs", post, f"Content-ID: {i}\r\n") for i in range(in_change_set)]
        parts.append(change_set(boundary, "cs", *inner))
    return batch_of(boundary, *parts)


def test_exactly_1000_requests_are_accepted() -> None:
    items = parse_batch(requests_batch("batch_l", 600, 400), "multipart/mixed; boundary=batch_l")
    assert len(items) == 601
    assert isinstance(items[-1], ChangeSet)
    assert len(items[-1].requests) == 400


@pytest.mark.parametrize(("top_level", "in_change_set"), [(1001, 0), (600, 401), (0, 1001)])
def test_more_than_1000_requests_are_refused(top_level: int, in_change_set: int) -> None:
    body = requests_batch("batch_l", top_level, in_change_set)
    with pytest.raises(BatchFormatError) as caught:
        parse_batch(body, "multipart/mixed; boundary=batch_l")
    assert caught.value.message == "The number of requests in the batch exceeds the limit of 1000."
    assert caught.value.code == "0x80060891"


def test_custom_request_limit() -> None:
    with pytest.raises(BatchFormatError, match="limit of 2"):
        parse_batch(requests_batch("batch_l", 3, 0), "multipart/mixed; boundary=batch_l", max_requests=2)


# Malformed requests

B = "batch_m"
CT = f"multipart/mixed; boundary={B}"
OK_GET = "GET contacts HTTP/1.1\r\n\r\n"
OK_POST = "POST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (batch_of(B, http_part(B, OK_GET)), "multipart/mixed", "no boundary"),
        (batch_of(B, http_part(B, OK_GET)), "application/json", "must be multipart/mixed"),
        (batch_of(B, http_part(B, OK_GET)), "multipart/mixed; boundary=", "malformed parameters"),
        (batch_of(B, http_part(B, OK_GET)), 'multipart/mixed; boundary="a\x00b"', "not a valid"),
        (batch_of(B, http_part(B, OK_GET)), "multipart/mixed; boundary=" + "x" * 71, "not a valid"),
        (batch_of(B, http_part(B, OK_GET)), "multipart/mixed; boundary=a; boundary=b", "repeats"),
        (batch_of(B, http_part(B, OK_GET)), "multipart/mixed; boundary=batch_other", "no '--batch_other'"),
        (http_part(B, OK_GET).encode(), CT, "not terminated"),
        (b"", CT, "no '--batch_m' delimiter"),
        (f"--{B}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{B}--".encode(), CT, "application/http"),
        (f"--{B}\r\nContent-Type: application/http\r\n\r\n{OK_GET}\r\n--{B}--".encode(), CT, "binary"),
        (
            f"--{B}\r\nContent-Transfer-Encoding: binary\r\n\r\n{OK_GET}\r\n--{B}--".encode(),
            CT,
            "Content-Type",
        ),
        (f"--{B}\r\nContent-Type: application/http\r\n--{B}--".encode(), CT, "blank line"),
        (batch_of(B, http_part(B, "GET contacts\r\n\r\n")), CT, "Malformed request line"),
        (batch_of(B, http_part(B, "GET  contacts HTTP/1.1\r\n\r\n")), CT, "Malformed request line"),
        (batch_of(B, http_part(B, "GET contacts HTTP/1.0\r\n\r\n")), CT, "HTTP version"),
        (batch_of(B, http_part(B, "get contacts HTTP/1.1\r\n\r\n")), CT, "Unsupported method"),
        (batch_of(B, http_part(B, "")), CT, "no request line"),
        (batch_of(B, http_part(B, "GET contacts HTTP/1.1\r\nAccept application/json\r\n\r\n")), CT, "header"),
        (batch_of(B, http_part(B, "GET contacts HTTP/1.1\r\n Accept: x\r\n\r\n")), CT, "header"),
        (batch_of(B, http_part(B, "GET contacts HTTP/1.1\r\nA: \x01\r\n\r\n")), CT, "control character"),
        (
            batch_of(B, http_part(B, "GET contacts\xff HTTP/1.1\r\n\r\n")).replace(b"\xc3\xbf", b"\xff"),
            CT,
            "UTF-8",
        ),
        (batch_of(B, http_part(B, OK_GET, "Content-ID: a b\r\n")), CT, "not a valid token"),
        (
            batch_of(B, http_part(B, OK_GET, "Content-ID: 1\r\n"), http_part(B, OK_GET, "Content-ID: 1\r\n")),
            CT,
            "twice",
        ),
        (batch_of(B, http_part(B, OK_GET, "Content-Type: application/http\r\n")), CT, "repeats"),
        (batch_of(B, change_set(B, "cs", http_part("cs", OK_GET, "Content-ID: 1\r\n"))), CT, "GET requests"),
        (batch_of(B, change_set(B, "cs")), CT, "at least one request"),
        (batch_of(B, f"--{B}\r\nContent-Type: multipart/mixed\r\n\r\n--cs--"), CT, "no boundary"),
        (batch_of(B, change_set(B, "cs", http_part("cs", OK_POST)).removesuffix("--")), CT, "not terminated"),
        (
            batch_of(B, change_set(B, "cs", change_set("cs", "inner", http_part("inner", OK_POST)))),
            CT,
            "cannot be nested",
        ),
    ],
)
def test_malformed_batches_are_refused(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(BatchFormatError) as caught:
        parse_batch(body, content_type)
    assert message in caught.value.message
    assert caught.value.code == "0x80060891"
    assert str(caught.value) == caught.value.message


def test_nested_change_set_is_refused_even_when_well_formed() -> None:
    inner = change_set("cs", "inner", http_part("inner", OK_POST, "Content-ID: 1\r\n"))
    body = batch_of(B, change_set(B, "cs", http_part("cs", OK_POST, "Content-ID: 2\r\n"), inner))
    with pytest.raises(BatchFormatError, match="Change sets cannot be nested"):
        parse_batch(body, CT)


# Content-ID references


def test_resolve_content_id() -> None:
    ids = {"1": "https://org.crm.dynamics.com/api/data/v9.2/contacts(11111111-0000-0000-0000-000000000001)"}
    assert resolve_content_id("$1", ids) == ids["1"]
    assert resolve_content_id("$1/parentcustomerid_account", ids) == ids["1"] + "/parentcustomerid_account"
    assert resolve_content_id("$1?$select=fullname", ids) == ids["1"] + "?$select=fullname"
    assert resolve_content_id("contacts(1)", ids) == "contacts(1)"
    assert resolve_content_id("/api/data/v9.2/contacts", ids) == "/api/data/v9.2/contacts"
    assert resolve_content_id("$metadata", ids) == "$metadata"
    with pytest.raises(BatchFormatError, match=r"'\$2'"):
        resolve_content_id("$2/x", ids)
    with pytest.raises(BatchFormatError):
        resolve_content_id("$10", ids)


def test_content_id_reference_parses_as_url() -> None:
    cs = change_set(
        B,
        "cs",
        http_part("cs", OK_POST, "Content-ID: 1\r\n"),
        http_part("cs", "POST $1/contact_customer_accounts HTTP/1.1\r\n\r\n{}", "Content-ID: 2\r\n"),
    )
    [item] = parse_batch(batch_of(B, cs), CT)
    assert isinstance(item, ChangeSet)
    assert [(r.url, r.content_id) for r in item.requests] == [
        ("contacts", "1"),
        ("$1/contact_customer_accounts", "2"),
    ]
    assert resolve_content_id(item.requests[1].url, {"1": "E"}) == "E/contact_customer_accounts"


# Formatting responses


def parse_mime(body: bytes, content_type: str) -> email.message.Message:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    assert not message.defects
    return message


def subparts(message: email.message.Message) -> list[email.message.Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    parts = [part for part in payload if isinstance(part, email.message.Message)]
    assert len(parts) == len(payload)
    assert not any(part.defects for part in parts)
    return parts


def http_payload(part: email.message.Message) -> str:
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    payload = part.get_payload()
    assert isinstance(payload, str)
    return payload


ENTITY = "https://org.crm.dynamics.com/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)"
GET_BODY = b'{"value": [{"subject": "Task 1 in batch"}]}'


def test_format_response_round_trips_through_email_parser() -> None:
    created = [
        InnerResponse(204, {"Location": f"{ENTITY}{n}", "OData-EntityId": f"{ENTITY}{n}"}, b"", str(n))
        for n in (1, 2)
    ]
    items: list[InnerResponse | ChangeSetResponse] = [
        ChangeSetResponse(tuple(created)),
        InnerResponse(200, {}, GET_BODY),
    ]
    body, content_type = format_batch_response(items)

    assert re.fullmatch(r"multipart/mixed; boundary=batchresponse_[0-9a-f-]{36}", content_type)
    boundary = content_type.split("=", 1)[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b"\n" not in body.replace(b"\r\n", b"")

    message = parse_mime(body, content_type)
    assert message.is_multipart()
    change_set_part, get_part = subparts(message)
    assert change_set_part.get_content_type() == "multipart/mixed"
    assert str(change_set_part.get_param("boundary")).startswith("changesetresponse_")
    inner = subparts(change_set_part)
    assert [p["Content-ID"] for p in inner] == ["1", "2"]
    for n, part in zip((1, 2), inner, strict=True):
        assert http_payload(part) == (
            f"HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n"
            f"Location: {ENTITY}{n}\r\nOData-EntityId: {ENTITY}{n}\r\n\r\n"
        )
    assert get_part["Content-ID"] is None
    assert http_payload(get_part) == (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\n"
        "OData-Version: 4.0\r\n\r\n" + GET_BODY.decode()
    )


def test_format_response_keeps_caller_headers_and_unknown_reason() -> None:
    error = b'{"error": {"code": "0x80040217", "message": "Not found"}}'
    body, content_type = format_batch_response(
        [
            InnerResponse(404, {"Content-Type": "application/json", "OData-Version": "4.0"}, error),
            InnerResponse(299, {}, b""),
        ]
    )
    first, second = subparts(parse_mime(body, content_type))
    assert http_payload(first) == (
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nOData-Version: 4.0\r\n\r\n"
        + error.decode()
    )
    assert http_payload(second).startswith("HTTP/1.1 299 \r\n")


def test_format_response_avoids_a_boundary_that_occurs_in_a_body(monkeypatch: pytest.MonkeyPatch) -> None:
    clashing = uuid.UUID("11111111-1111-4111-8111-111111111111")
    fresh = iter([clashing, uuid.UUID("22222222-2222-4222-8222-222222222222")])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(fresh))
    body_text = f"--batchresponse_{clashing}--".encode()
    body, content_type = format_batch_response([InnerResponse(200, {}, body_text)])
    assert content_type == "multipart/mixed; boundary=batchresponse_22222222-2222-4222-8222-222222222222"
    [part] = subparts(parse_mime(body, content_type))
    assert http_payload(part).endswith(body_text.decode())


def test_format_empty_response() -> None:
    body, content_type = format_batch_response([])
    boundary = content_type.split("=", 1)[1]
    assert body == f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    "response",
    [
        InnerResponse(204, {"X-Bad": "a\r\nInjected: yes"}, b""),
        InnerResponse(204, {"Bad Name": "x"}, b""),
        InnerResponse(204, {}, b"", "1\r\n"),
        InnerResponse(42, {}, b""),
    ],
)
def test_format_refuses_invalid_responses(response: InnerResponse) -> None:
    with pytest.raises(ValueError, match="invalid"):
        format_batch_response([response])


# Fuzzing: only BatchFormatError may escape

FUZZ_SAMPLES = [
    (crlf(CS_BATCH), CS_CONTENT_TYPE),
    (PLAIN_BATCH, PLAIN_CONTENT_TYPE),
]
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"--",
    b":",
    b" ",
    b"\x00",
    b"\xff",
    b"--" + CS_BATCH_BOUNDARY.encode(),
    b"--" + CS_BOUNDARY.encode(),
    b"--" + CS_BOUNDARY.encode() + b"--",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: multipart/mixed; boundary=" + CS_BOUNDARY.encode() + b"\r\n\r\n",
    b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n",
    b"GET x HTTP/1.1\r\n",
    b"Content-ID: 1\r\n",
    b'"',
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        position = rng.randint(0, len(data))
        action = rng.randrange(6)
        if action == 0:
            data = data[:position] + bytes([rng.randrange(256)]) + data[position + 1 :]
        elif action == 1:
            data = data[:position] + rng.choice(TOKENS) + data[position:]
        elif action == 2:
            data = data[:position] + data[position + rng.randint(1, 40) :]
        elif action == 3:
            data = data[:position]
        elif action == 4:
            start = rng.randint(0, len(data))
            data = data[:position] + data[start : start + rng.randint(1, 200)] + data[position:]
        else:
            data = data[:position] + rng.randbytes(rng.randint(1, 8)) + data[position:]
    return data


def mutate_content_type(rng: random.Random, content_type: str) -> str:
    if rng.random() < 0.8:
        return content_type
    return mutate(rng, content_type.encode()).decode("latin-1")


def test_fuzz_only_batch_format_errors_escape() -> None:
    rng = random.Random(20240601)
    outcomes = {"parsed": 0, "refused": 0}
    messages: set[bool] = set()
    for iteration in range(4000):
        sample, content_type = FUZZ_SAMPLES[iteration % len(FUZZ_SAMPLES)]
        body = mutate(rng, sample)
        header = mutate_content_type(rng, content_type)
        try:
            items = parse_batch(body, header, max_requests=rng.choice([1000, 3]))
        except BatchFormatError as error:
            messages.add(bool(error.message))
            outcomes["refused"] += 1
            continue
        outcomes["parsed"] += 1
        for item in items:
            requests = item.requests if isinstance(item, ChangeSet) else (item,)
            for request in requests:
                assert isinstance(request, InnerRequest)
                assert isinstance(request.body, bytes)
                assert all(key == key.lower() for key in request.headers)
    assert outcomes["parsed"] > 100
    assert outcomes["refused"] > 100
    assert messages == {True}
