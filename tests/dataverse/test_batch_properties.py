"""Property-based tests of reading ``$batch`` answers: any answer is read, or refused as transient.

A ``$batch`` answer comes from the server; a broken or hostile one must never raise anything but
``TransientError`` (retried later), and a well-formed one must be read back part by part.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hydration.dataverse import batch
from hydration.dataverse.errors import TransientError

FAST = settings(max_examples=300, deadline=None, database=None)
BOUNDARY = "batchresponse_1"
LINES = st.sampled_from(
    [
        f"--{BOUNDARY}",
        f"--{BOUNDARY}--",
        "--changesetresponse_2",
        "--changesetresponse_2--",
        "Content-Type: application/http",
        "Content-Type: multipart/mixed; boundary=changesetresponse_2",
        "Content-Type: multipart/mixed; boundary=batchresponse_1",
        "Content-Transfer-Encoding: binary",
        "",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 ²⁰⁴ odd digits",
        "HTTP/1.1",
        "HTTP/1.1 99999999999999999999999 huge",
        "Content-Type: application/json",
        '{"value": []}',
        "garbage",
    ]
)
ANSWERS = st.tuples(st.lists(LINES, max_size=24), st.sampled_from(["\r\n", "\n"])).map(
    lambda pair: pair[1].join(pair[0]).encode("utf-8")
)
CONTENT_TYPES = st.one_of(
    st.just(f"multipart/mixed; boundary={BOUNDARY}"),
    st.text(max_size=60),
    st.just("multipart/mixed; boundary*=utf-8''%E2%9C%93"),
    st.just("multipart/mixed"),
)


ODD_STATUS = f"--{BOUNDARY}\r\n\r\nHTTP/1.1 ²⁰⁴ x\r\n\r\n--{BOUNDARY}--\r\n".encode()
"""A part whose status has digits ``str.isdigit`` takes but ``int`` does not."""


def read_or_refuse(body: bytes, content_type: str) -> list[batch.PartResult] | None:
    try:
        return batch.parse(body, content_type)
    except TransientError:
        return None


@FAST
@given(ANSWERS, CONTENT_TYPES)
@example(f"--{BOUNDARY}\r\n\r\n\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/mixed; boundary={BOUNDARY}")
@example(ODD_STATUS, f"multipart/mixed; boundary={BOUNDARY}")
@example(b"--x\r\n", "multipart/mixed; boundary*=utf-8''%E2%9C%93")
def test_any_answer_is_read_or_refused_as_transient(body: bytes, content_type: str) -> None:
    for result in read_or_refuse(body, content_type) or []:
        assert 100 <= result.status <= 999


@FAST
@given(st.binary(max_size=300), CONTENT_TYPES)
def test_any_bytes_are_read_or_refused_as_transient(body: bytes, content_type: str) -> None:
    read_or_refuse(body, content_type)


@FAST
@given(
    st.lists(st.tuples(st.integers(100, 599), st.binary(max_size=40)), min_size=1, max_size=6),
    st.sampled_from(["\r\n", "\n"]),
)
def test_a_well_formed_answer_is_read_part_by_part(parts: list[tuple[int, bytes]], newline: str) -> None:
    nl = newline.encode()
    chunks = []
    for status, payload in parts:
        body = payload.replace(b"\r", b"").replace(b"\n", b" ").replace(b"--", b"-")
        chunks.append(
            b"--"
            + BOUNDARY.encode()
            + nl
            + b"Content-Type: application/http"
            + nl
            + nl
            + f"HTTP/1.1 {status} Status".encode()
            + nl
            + nl
            + body
            + nl
        )
    answer = b"".join(chunks) + b"--" + BOUNDARY.encode() + b"--" + nl
    results = batch.parse(answer, f"multipart/mixed; boundary={BOUNDARY}")
    assert [r.status for r in results] == [status for status, _ in parts]
