"""Page sizes and the ``$skiptoken`` cursor of collection queries.

``Prefer: odata.maxpagesize`` is a maximum: Dataverse's elastic tables serve shorter pages while
more rows remain, so a client must follow ``@odata.nextLink`` rather than count rows. The
``short_pages`` mode makes every collection query behave so, reproducibly, to prove a client does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import Any
from urllib.parse import quote as urlquote
from urllib.parse import unquote

from .errors import bad_request
from .exchange import ApiRequest
from .modes import PAGING

MAX_PAGE = 5000
_COOKIE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([^"]*)" istracking="False" />$')
_TOKEN_KEY = secrets.token_bytes(32)
"""Signs paging cookies, so an edited or made-up ``$skiptoken`` is refused instead of misread."""


def page_size(request: ApiRequest) -> tuple[int, bool]:
    """The page size and whether ``Prefer: odata.maxpagesize`` was honoured."""
    value = request.prefer().get("odata.maxpagesize")
    if value is not None and value.isdigit() and 0 < int(value) <= MAX_PAGE:
        return int(value), True
    return MAX_PAGE, False


def short_page(seed: int, query: str, page: int, size: int) -> int:
    """A page size strictly below ``size`` (1 when ``size`` is 1), the same for the same inputs.

    One page in four is at most a tenth of ``size``, so a client meets both near-full pages and
    pages of a few rows, as elastic tables serve them.
    """
    if size <= 1:
        return 1
    digest = hashlib.sha256(f"{seed}:{query}:{page}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big")
    ceiling = max(1, (size - 1) // 10) if digest[8] % 4 == 0 else size - 1
    return 1 + draw % ceiling


def _sign(payload: str) -> str:
    return hmac.new(_TOKEN_KEY, payload.encode(), hashlib.sha256).hexdigest()[:32]


def encode_token(state: dict[str, Any]) -> str:
    """The opaque ``$skiptoken``: a cookie shaped like Dataverse's, carrying the signed cursor."""
    payload = base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()
    inner = f"{payload}.{_sign(payload)}"
    return f'<cookie pagenumber="{state["page"]}" pagingcookie="{urlquote(inner)}" istracking="False" />'


def _valid_state(state: Any, fingerprint: str, order_length: int, page: int) -> bool:
    """Whether a decoded cursor has the shape ``run_query`` writes, for this query and page."""

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    return (
        isinstance(state, dict)
        and state.get("q") == fingerprint
        and state.get("page") == page
        and count(state.get("served"))
        and count(state.get("seq"))
        and state.get("mode") in PAGING
        and isinstance(state.get("last"), list)
        and len(state["last"]) == order_length
        and (state.get("snap") is None or isinstance(state["snap"], str))
        and (state["mode"] != "snapshot" or isinstance(state.get("snap"), str))
    )


def decode_token(token: str, fingerprint: str, order_length: int) -> dict[str, Any]:
    """The cursor inside a ``$skiptoken``; 400 when it is not ours or belongs to another query."""
    match = _COOKIE.match(token)
    try:
        if not match:
            raise ValueError
        payload, _, signature = unquote(match.group(2)).rpartition(".")
        if not hmac.compare_digest(signature, _sign(payload)):
            raise ValueError
        state = json.loads(base64.urlsafe_b64decode(payload.encode()))
        if not _valid_state(state, fingerprint, order_length, int(match.group(1))):
            raise ValueError
    except (ValueError, TypeError) as exc:
        raise bad_request("The $skiptoken is not valid for this query.") from exc
    result: dict[str, Any] = state
    return result
