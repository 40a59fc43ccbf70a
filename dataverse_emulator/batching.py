"""Running a ``$batch``: each part goes through the same handlers as a top-level request.

Parts run in order under the store's lock. A change set runs in one transaction: the first failure
rolls it back and its single error answer stands for the whole set. Without
``Prefer: odata.continue-on-error`` the first failed part ends the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from .batch import (
    BatchFormatError,
    ChangeSet,
    ChangeSetResponse,
    InnerRequest,
    InnerResponse,
    format_batch_response,
    parse_batch,
    resolve_content_id,
)
from .errors import ApiError, bad_request
from .exchange import ODATA_HEADERS, ApiRequest, ApiResponse, error_response
from .organization import Organization, Stats

API_PREFIX = "/api/data/v9.2/"
MAX_INNER_URL = 65_536


class _RolledBackError(Exception):
    def __init__(self, response: InnerResponse) -> None:
        super().__init__(response.status)
        self.response = response


def split_query(query: str) -> dict[str, str]:
    """Query options by name; a repeated option is a 400, as in Dataverse."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise bad_request(
                f"Query option '{name}' was specified more than once, but it must be specified at most once."
            )
        options[name] = value
    return options


def inner_request(outer: ApiRequest, part: InnerRequest, ids: dict[str, str]) -> ApiRequest:
    """The ``ApiRequest`` for one part of a batch, its URL resolved against the organization."""
    url = resolve_content_id(part.url, ids)
    if len(url) > MAX_INNER_URL:
        raise bad_request("The URL of a request in the batch is longer than 64 KB.")
    split = urlsplit(url)
    path = unquote(split.path)
    base_path = urlsplit(outer.base_url).path
    if path.startswith(base_path):
        path = path[len(base_path) :]
    elif path.startswith("/"):
        raise bad_request(f"The request URL '{url}' in the batch is not under {base_path}.")
    headers = dict(part.headers)
    return ApiRequest(
        part.method,
        path,
        split_query(split.query),
        headers,
        part.body,
        outer.user,
        outer.base_url,
        inner=True,
    )


def run_batch(
    org: Organization, request: ApiRequest, handle: Callable[[ApiRequest], ApiResponse]
) -> ApiResponse:
    """Answer ``POST $batch``."""
    try:
        items = parse_batch(request.body, request.header("content-type") or "")
    except BatchFormatError as exc:
        raise ApiError(400, exc.code, exc.message) from exc
    keep_going = "odata.continue-on-error" in request.prefer()
    answers: list[InnerResponse | ChangeSetResponse] = []
    with org.store.lock:
        for item in items:
            if isinstance(item, ChangeSet):
                answer: InnerResponse | ChangeSetResponse = _change_set(org, request, item, handle)
                failed = not isinstance(answer, ChangeSetResponse)
            else:
                answer = _run(request, item, {}, handle)
                failed = answer.status >= 400
            answers.append(answer)
            if failed and not keep_going:
                break
    body, content_type = format_batch_response(answers)
    headers = {**ODATA_HEADERS, "Content-Type": content_type}
    if keep_going:
        headers["Preference-Applied"] = "odata.continue-on-error"
    return ApiResponse(200, headers, body)


def _run(
    outer: ApiRequest, part: InnerRequest, ids: dict[str, str], handle: Callable[[ApiRequest], ApiResponse]
) -> InnerResponse:
    try:
        response = handle(inner_request(outer, part, ids))
    except (ApiError, BatchFormatError) as exc:
        error = exc if isinstance(exc, ApiError) else ApiError(400, exc.code, exc.message)
        response = error_response(error)
    return InnerResponse(response.status, response.headers, response.body, part.content_id)


def _change_set(
    org: Organization, outer: ApiRequest, change_set: ChangeSet, handle: Callable[[ApiRequest], ApiResponse]
) -> InnerResponse | ChangeSetResponse:
    ids: dict[str, str] = {}
    answers: list[InnerResponse] = []
    written = _written_counts(org.stats)
    try:
        with org.store.transaction():
            for part in change_set.requests:
                answer = _run(outer, part, ids, handle)
                if answer.status >= 400:
                    raise _RolledBackError(answer)
                answers.append(answer)
                location = answer.headers.get("OData-EntityId")
                if part.content_id and location:
                    ids[part.content_id] = location
    except _RolledBackError as rolled_back:
        _restore_written(org.stats, written)
        return rolled_back.response
    return ChangeSetResponse(tuple(answers))


_WrittenCounts = tuple[Counter[str], dict[str, int]]


def _written_counts(stats: Stats) -> _WrittenCounts:
    """The rows-written counters (per table and per user) before a change set runs.

    Writers count under the store lock, which the batch holds, so nothing else moves these meanwhile.
    """
    return stats.rows_written.copy(), {user: c["rows_written"] for user, c in stats.per_user.items()}


def _restore_written(stats: Stats, saved: _WrittenCounts) -> None:
    """Forget the rows a rolled-back change set counted: they were never written."""
    tables, users = saved
    stats.rows_written = tables
    for user, counter in stats.per_user.items():
        if users.get(user):
            counter["rows_written"] = users[user]
        else:
            counter.pop("rows_written", None)
