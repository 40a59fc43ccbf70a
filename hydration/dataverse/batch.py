"""Building ``$batch`` requests and reading their answers (client side).

The request is written by hand (it is a few lines of a fixed shape); the answer, a MIME multipart
message, is read with the standard library's ``email`` parser, which handles boundaries, nested change
sets and line endings correctly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .errors import TransientError

MAX_REQUESTS = 1000


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
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise TransientError("the $batch answer is not multipart")
    results: list[PartResult] = []
    _collect(message, results)
    return results


def _collect(message: Message, results: list[PartResult]) -> None:
    payload = message.get_payload()
    if not isinstance(payload, list):
        raise TransientError("the $batch answer has no parts")
    for part in payload:
        if not isinstance(part, Message):
            raise TransientError("a $batch answer part is not a MIME part")
        if part.is_multipart():
            _collect(part, results)
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            raise TransientError("a $batch answer part has no body")
        results.append(_http_response(raw))


def _http_response(raw: bytes) -> PartResult:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise TransientError("a $batch answer part has no HTTP status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return PartResult(int(status_line[1]), headers, body.strip(b"\n"))
