"""The wire format of ``POST [org]/api/data/v9.2/$batch``: multipart/mixed requests in, responses out.

``parse_batch`` turns a batch request body into top-level ``InnerRequest`` and ``ChangeSet`` items;
``format_batch_response`` writes the answers back as Dataverse does. Dispatching the inner requests is
the caller's business: this module only reads and writes the format, and on any malformed input it
raises ``BatchFormatError`` and nothing else.

Parsing follows RFC 2046: the line break before a ``--boundary`` delimiter belongs to the delimiter,
so bodies are kept byte-exact, and text that merely starts like a delimiter stays in the body. CRLF and
bare LF line endings are both accepted. Any RFC 2046 boundary is accepted (Dataverse's ``batch_`` and
``changeset_`` prefixes are a convention, not a requirement).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType

DEFAULT_ERROR_CODE = "0x80060891"
MAX_BATCH_REQUESTS = 1000

_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN_RE = re.compile(_TCHARS)
_MEDIA_TYPE_RE = re.compile(rf"({_TCHARS}/{_TCHARS})[ \t]*")
_PARAM_RE = re.compile(rf'[ \t]*;[ \t]*({_TCHARS})[ \t]*=[ \t]*("(?:[^"\\\r\n]|\\[^\r\n])*"|{_TCHARS})[ \t]*')
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REFERENCE_RE = re.compile(r"\$([^/?#]+)(.*)", re.DOTALL)
_SYSTEM_SEGMENTS = frozenset({"$metadata", "$batch", "$entity", "$crossjoin", "$all", "$root"})
_CRLF = b"\r\n"


class BatchFormatError(Exception):
    """A malformed ``$batch`` request; the server answers 400 with ``code`` and ``message``."""

    def __init__(self, message: str, code: str = DEFAULT_ERROR_CODE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class InnerRequest:
    """One operation of a batch; ``headers`` keys are lowercase (use ``header`` for any spelling).

    ``url`` is kept as written: absolute, absolute-path, relative, or a ``$n`` Content-ID reference
    (see ``resolve_content_id``). Repeated headers are joined with ``", "``.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    content_id: str | None = None

    def header(self, name: str) -> str | None:
        """Return the value of header ``name`` (case-insensitive), or ``None``."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ChangeSet:
    """Operations to run atomically, in order; never empty, never containing GET."""

    requests: tuple[InnerRequest, ...]
    boundary: str


BatchItem = InnerRequest | ChangeSet


@dataclass(frozen=True)
class InnerResponse:
    """The answer to one operation; ``content_id`` is echoed as the part's ``Content-ID`` header."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    content_id: str | None = None


@dataclass(frozen=True)
class ChangeSetResponse:
    """The answers to a change set that succeeded (a failed one is answered by one ``InnerResponse``)."""

    responses: tuple[InnerResponse, ...]


@dataclass
class _State:
    limit: int
    count: int = 0
    content_ids: set[str] = field(default_factory=set)

    def count_request(self) -> None:
        self.count += 1
        if self.count > self.limit:
            raise BatchFormatError(f"The number of requests in the batch exceeds the limit of {self.limit}.")


def parse_batch(body: bytes, content_type: str, *, max_requests: int = MAX_BATCH_REQUESTS) -> list[BatchItem]:
    """Parse a ``$batch`` request body sent with the ``Content-Type`` header value ``content_type``.

    Requests inside change sets count towards ``max_requests``. Content-IDs must be unique in the batch.
    An empty batch (only the close delimiter) gives an empty list. Raises ``BatchFormatError``.
    """
    boundary = _boundary(content_type, "batch request")
    state = _State(max_requests)
    items: list[BatchItem] = []
    for part in _split_parts(body, boundary, "batch request"):
        headers, media_type, content = _part_head(part, "batch part")
        if media_type != "multipart/mixed":
            items.append(_operation(headers, media_type, content, state, in_change_set=False))
            continue
        change_set_boundary = _boundary(headers["content-type"], "change set")
        requests: list[InnerRequest] = []
        for inner in _split_parts(content, change_set_boundary, "change set"):
            inner_headers, inner_type, inner_content = _part_head(inner, "change set part")
            if inner_type == "multipart/mixed":
                raise BatchFormatError("Change sets cannot be nested.")
            requests.append(_operation(inner_headers, inner_type, inner_content, state, in_change_set=True))
        if not requests:
            raise BatchFormatError("A change set must contain at least one request.")
        items.append(ChangeSet(tuple(requests), change_set_boundary))
    return items


def resolve_content_id(url: str, ids: Mapping[str, str]) -> str:
    """Replace a leading ``$n`` in ``url`` by ``ids[n]``, the entity URL recorded for Content-ID ``n``.

    ``$1``, ``$1/navigation`` and ``$1?$select=x`` are references; other URLs, and OData system
    resources such as ``$metadata``, come back unchanged. An unknown id raises ``BatchFormatError``.
    """
    match = _REFERENCE_RE.fullmatch(url)
    if match is None:
        return url
    name, rest = match.groups()
    target = ids.get(name)
    if target is not None:
        return target + rest
    if "$" + name in _SYSTEM_SEGMENTS:
        return url
    raise BatchFormatError(
        f"Content-ID reference '${name}' does not match an earlier request in the change set."
    )


def format_batch_response(items: Sequence[InnerResponse | ChangeSetResponse]) -> tuple[bytes, str]:
    """Write the ``$batch`` response body; return it with the ``Content-Type`` header value to send.

    Every inner response gets ``OData-Version: 4.0`` and, when it has a body, ``Content-Type:
    application/json; odata.metadata=minimal`` unless its headers already name them. A bad status or
    a header with a line break is a programming error and raises ``ValueError``.
    """
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, InnerResponse):
            parts.append(_response_part(item))
            continue
        nested, nested_type = _multipart([_response_part(r) for r in item.responses], "changesetresponse")
        parts.append(b"Content-Type: " + nested_type.encode("ascii") + _CRLF + _CRLF + nested)
    payload, content_type = _multipart(parts, "batchresponse")
    return payload + _CRLF, content_type


def _boundary(content_type: str, what: str) -> str:
    media_type, params = _media_type(content_type, what)
    if media_type != "multipart/mixed":
        raise BatchFormatError(f"The {what} Content-Type must be multipart/mixed, not {media_type!r}.")
    boundary = params.get("boundary")
    if boundary is None:
        raise BatchFormatError(f"The {what} Content-Type has no boundary parameter.")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise BatchFormatError(f"The {what} boundary {boundary[:80]!r} is not a valid multipart boundary.")
    return boundary


def _media_type(value: str, what: str) -> tuple[str, dict[str, str]]:
    match = _MEDIA_TYPE_RE.match(value.lstrip(" \t"))
    if match is None:
        raise BatchFormatError(f"The {what} Content-Type {value[:80]!r} is not a media type.")
    rest = value.lstrip(" \t")[match.end() :]
    params: dict[str, str] = {}
    while rest:
        param = _PARAM_RE.match(rest)
        if param is None:
            if re.fullmatch(r"[ \t]*;[ \t]*", rest):
                break
            raise BatchFormatError(f"The {what} Content-Type {value[:80]!r} has malformed parameters.")
        name, raw = param.group(1).lower(), param.group(2)
        if name in params:
            raise BatchFormatError(f"The {what} Content-Type repeats the {name!r} parameter.")
        params[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        rest = rest[param.end() :]
    return match.group(1).lower(), params


def _split_parts(data: bytes, boundary: str, what: str) -> Iterator[bytes]:
    marker = re.escape(b"--" + boundary.encode("ascii"))
    delimiter = re.compile(rb"(?:\A|\r?\n)" + marker + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    matches = delimiter.finditer(data)
    previous = next(matches, None)
    if previous is None:
        raise BatchFormatError(f"The {what} has no '--{boundary}' delimiter line.")
    while previous.group(1) is None:
        current = next(matches, None)
        if current is None:
            raise BatchFormatError(f"The {what} is not terminated by a '--{boundary}--' line.")
        yield data[previous.end() : current.start()]
        previous = current


def _read_head(data: bytes, what: str, *, need_blank_line: bool) -> tuple[list[str], bytes]:
    lines: list[str] = []
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        stop = len(data) if end < 0 else end
        line = data[position:stop].removesuffix(b"\r")
        position = stop + 1
        if not line:
            return lines, data[position:]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BatchFormatError(f"The {what} has a header line that is not UTF-8.") from None
        if _CONTROL_RE.search(text):
            raise BatchFormatError(f"The {what} has a control character in {text[:80]!r}.")
        lines.append(text)
    if need_blank_line:
        raise BatchFormatError(f"The {what} headers are not followed by a blank line.")
    return lines, b""


def _parse_headers(lines: Sequence[str], what: str, *, join_repeats: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise BatchFormatError(f"The {what} has a malformed header line {line[:80]!r}.")
        key, value = name.lower(), value.strip(" \t")
        if key in headers:
            if not join_repeats:
                raise BatchFormatError(f"The {what} repeats the {name} header.")
            value = f"{headers[key]}, {value}"
        headers[key] = value
    return headers


def _part_head(part: bytes, what: str) -> tuple[dict[str, str], str, bytes]:
    lines, content = _read_head(part, what, need_blank_line=True)
    headers = _parse_headers(lines, what, join_repeats=False)
    content_type = headers.get("content-type")
    if content_type is None:
        raise BatchFormatError(f"A {what} has no Content-Type header.")
    return headers, _media_type(content_type, what)[0], content


def _operation(
    headers: Mapping[str, str], media_type: str, content: bytes, state: _State, *, in_change_set: bool
) -> InnerRequest:
    where = "change set part" if in_change_set else "batch part"
    if media_type != "application/http":
        raise BatchFormatError(f"A {where} must be application/http, not {media_type!r}.")
    if headers.get("content-transfer-encoding", "").lower() != "binary":
        raise BatchFormatError(f"A {where} must have the header 'Content-Transfer-Encoding: binary'.")
    content_id = headers.get("content-id")
    if content_id is not None:
        if not _TOKEN_RE.fullmatch(content_id):
            raise BatchFormatError(f"The Content-ID {content_id[:80]!r} is not a valid token.")
        if content_id in state.content_ids:
            raise BatchFormatError(f"The Content-ID {content_id!r} is used twice in the batch.")
        state.content_ids.add(content_id)
    state.count_request()
    lines, body = _read_head(content, "inner request", need_blank_line=False)
    if not lines:
        raise BatchFormatError(f"A {where} has no request line.")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[1]:
        raise BatchFormatError(f"Malformed request line {lines[0][:80]!r}: expected 'METHOD URL HTTP/1.1'.")
    method, url, version = request_line
    if version != "HTTP/1.1":
        raise BatchFormatError(f"Unsupported HTTP version {version[:20]!r} in an inner request.")
    if method not in _METHODS:
        raise BatchFormatError(f"Unsupported method {method[:20]!r} in an inner request.")
    if in_change_set and method == "GET":
        raise BatchFormatError("GET requests are not allowed inside a change set.")
    inner_headers = _parse_headers(lines[1:], "inner request", join_repeats=True)
    return InnerRequest(method, url, MappingProxyType(inner_headers), body, content_id)


def _header_line(name: str, value: str) -> bytes:
    if not _TOKEN_RE.fullmatch(name) or _CONTROL_RE.search(value):
        raise ValueError(f"invalid response header {name!r}: {value!r}")
    return f"{name}: {value}".encode()


def _response_part(response: InnerResponse) -> bytes:
    if not 100 <= response.status <= 599:
        raise ValueError(f"invalid HTTP status {response.status}")
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    part_head = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if response.content_id is not None:
        part_head.append(_header_line("Content-ID", response.content_id))
    names = {name.lower() for name in response.headers}
    head = [f"HTTP/1.1 {response.status} {reason}".encode("ascii")]
    if response.body and "content-type" not in names:
        head.append(b"Content-Type: application/json; odata.metadata=minimal")
    if "odata-version" not in names:
        head.append(b"OData-Version: 4.0")
    head.extend(_header_line(name, value) for name, value in response.headers.items())
    return _CRLF.join(part_head) + _CRLF * 2 + _CRLF.join(head) + _CRLF * 2 + response.body


def _multipart(parts: Sequence[bytes], prefix: str) -> tuple[bytes, str]:
    while True:
        boundary = f"{prefix}_{uuid.uuid4()}"
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    payload = b"".join(marker + _CRLF + part + _CRLF for part in parts) + marker + b"--"
    return payload, f"multipart/mixed; boundary={boundary}"
