"""Building ``$batch`` requests and reading their answers (client side).

The request is written by hand (it is a few lines of a fixed shape). The answer, a MIME multipart
message, is split at its boundaries here too, with the standard library's ``email`` package reading only
the small ``Content-Type`` headers (boundary parameters, quoted or not): the ``email`` parser itself
keeps several copies of the whole answer while it works (about six times its size), and answers of a
few megabytes, several read at once, made that the worker's largest use of memory. Each part's body is
sliced from the answer once; nested change sets and CRLF or bare LF line endings are handled.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .errors import TransientError

MAX_REQUESTS = 1000
_STATUS = re.compile(r"[1-9][0-9]{2}")
"""An HTTP status code: three ASCII digits (``str.isdigit`` would also take ``²⁰⁴``)."""


@dataclass(frozen=True)
class Part:
    """One request inside a batch: a path relative to the Web API root, headers, and a JSON body."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartResult:
    """One answer inside a batch."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The answer's JSON body."""
        return json.loads(self.body.decode("utf-8"))


def build(parts: Sequence[Part], api_path: str) -> tuple[bytes, str]:
    """The multipart body and its ``Content-Type`` for ``parts`` (each outside any change set)."""
    if not parts or len(parts) > MAX_REQUESTS:
        raise ValueError(f"a batch holds 1 to {MAX_REQUESTS} requests, not {len(parts)}")
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for part in parts:
        lines += [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", ""]
        lines.append(f"{part.method} {api_path}{part.path} HTTP/1.1")
        headers = {"Accept": "application/json", **part.headers}
        if part.body is not None:
            headers["Content-Type"] = "application/json"
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("")
        lines.append(json.dumps(part.body, separators=(",", ":")) if part.body is not None else "")
    lines.append(f"--{boundary}--")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8"), f"multipart/mixed; boundary={boundary}"


def parse(body: bytes, content_type: str) -> list[PartResult]:
    """The answers of a batch response, in order (answers of a change set are flattened)."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise TransientError("the $batch answer is not multipart")
    results: list[PartResult] = []
    _collect(body, boundary, results)
    return results


def _boundary(content_type: str) -> str | None:
    """The boundary of a ``multipart/*`` content type, or ``None`` when it is not one."""
    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_maintype() != "multipart":
        return None
    boundary = header.get_param("boundary")
    return boundary if isinstance(boundary, str) and boundary else None


def _collect(body: bytes, boundary: str, results: list[PartResult]) -> None:
    parts = _split(body, boundary)
    if not parts:
        raise TransientError("the $batch answer has no parts")
    for part in parts:
        head, payload = _head_and_body(part)
        nested = _boundary(_headers(head.decode("latin-1").splitlines()).get("content-type", ""))
        if nested is not None:
            _collect(payload, nested, results)
        else:
            results.append(_http_response(payload))


def _split(body: bytes, boundary: str) -> list[bytes]:
    """The parts between the delimiters ``--boundary`` (each at the start of a line).

    A part ends before the line break that belongs to the delimiter after it.
    """
    try:
        delimiter = b"--" + boundary.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TransientError("the $batch answer's boundary is not Latin-1 text") from exc
    if body.startswith(delimiter):
        position = 0
    else:
        position = body.find(b"\n" + delimiter) + 1
        if position == 0:
            raise TransientError("the $batch answer has no boundary")
    parts: list[bytes] = []
    while True:
        after = position + len(delimiter)
        if body.startswith(b"--", after):
            return parts  # the close delimiter
        line_end = body.find(b"\n", after)
        if line_end < 0:
            raise TransientError("the $batch answer ends inside a delimiter line")
        following = body.find(b"\n" + delimiter, line_end)
        if following < 0:
            raise TransientError("the $batch answer is cut short (no closing boundary)")
        end = following - 1 if body[following - 1 : following] == b"\r" else following
        parts.append(body[line_end + 1 : max(end, line_end + 1)])
        position = following + 1


def _head_and_body(raw: bytes) -> tuple[bytes, bytes]:
    """Headers and body of a part (or of an HTTP message), split at the first blank line."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return raw[:crlf], raw[crlf + 4 :]
    if lf >= 0:
        return raw[:lf], raw[lf + 2 :]
    return raw, b""


def _http_response(raw: bytes) -> PartResult:
    head, body = _head_and_body(raw)
    lines = head.decode("latin-1").splitlines() or [""]
    status_line = lines[0].split(" ", 2)
    if (
        len(status_line) < 2
        or not status_line[0].startswith("HTTP/")
        or not _STATUS.fullmatch(status_line[1])
    ):
        raise TransientError("a $batch answer part has no HTTP status line")
    return PartResult(int(status_line[1]), _headers(lines[1:]), body.strip(b"\r\n"))


def _headers(lines: list[str]) -> dict[str, str]:
    """Header lines as a dict with lower-case names."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers
