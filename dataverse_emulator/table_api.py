"""Requests on a table's rows: queries, reads, writes, bulk messages, ``$ref``, properties and ``$count``.

``api`` routes a request here with its kind and the parts of its path (entity set, key, and the
navigation property or column it names); each kind has one handler below.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .addressing import RowKey, parse_key
from .bulk import create_multiple, update_multiple, upsert_multiple
from .errors import ApiError, bad_request
from .exchange import ODATA_HEADERS, ApiRequest, ApiResponse, json_response, no_content
from .organization import Organization
from .properties import get_property, write_property
from .query import count_segment, retrieve, run_query
from .references import associate, disassociate
from .schema import Entity
from .values import new_guid
from .writes import delete_row, write_row

Handler = Callable[[Organization, Entity, ApiRequest, tuple[str, ...]], ApiResponse]


def table_request(org: Organization, request: ApiRequest, kind: str, parts: tuple[str, ...]) -> ApiResponse:
    """Answer a request on a table (``parts[0]`` is its entity set)."""
    return _HANDLERS[kind](org, _table(org, parts[0]), request, parts)


def partition_parameter(request: ApiRequest) -> str | None:
    """The ``partitionId`` query parameter (any case; the value quoted or not), if given."""
    for name, value in request.query.items():
        if name.lower() == "partitionid":
            text = value.strip()
            if len(text) >= 2 and text[0] == text[-1] == "'":
                text = text[1:-1].replace("''", "'")
            return text
    return None


def row_key(entity: Entity, request: ApiRequest, text: str) -> RowKey:
    """The key a request names: the key in the URL, with the ``partitionId`` parameter of elastic tables.

    Microsoft Learn (Use elastic tables): a row of an elastic table is addressed by its key and
    ``partitionid`` pair, or by its key with the ``partitionId`` parameter.
    """
    key = parse_key(entity, text)
    pid = partition_parameter(request)
    if pid is None:
        return key
    if not entity.elastic:
        raise bad_request(f"{entity.logical_name} is not an elastic table: partitionId does not apply.")
    if key.partition_id not in (None, pid):
        raise bad_request("The key and the partitionId parameter name different partitions.")
    return RowKey(key.id, pid)


def _table(org: Organization, entity_set: str) -> Entity:
    entity = org.catalog.by_set(entity_set)
    if entity is None:
        raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{entity_set}'.")
    return entity


def _entity_id(request: ApiRequest, entity: Entity, key: RowKey) -> dict[str, str]:
    """The ``OData-EntityId`` of a written row, in the canonical form (lowercase GUID) Dataverse answers."""
    text = key.id
    if key.partition_id is not None:
        literal = key.partition_id.replace("'", "''")
        text = f"{entity.primary_id}={key.id},partitionid='{literal}'"
    return {"OData-EntityId": f"{request.base_url}{entity.entity_set}({text})"}


def _written(
    org: Organization, request: ApiRequest, entity: Entity, key: RowKey, created: bool
) -> ApiResponse:
    """204 with the row's address, or with ``Prefer: return=representation`` the row itself."""
    headers = _entity_id(request, entity, key)
    if request.prefer().get("return") == "representation":
        body = retrieve(org, entity, key, _plain_get(request))
        return json_response(201 if created else 200, body, headers=headers)
    return no_content(headers)


def _plain_get(request: ApiRequest) -> ApiRequest:
    select = {k: v for k, v in request.query.items() if k == "$select"}
    return ApiRequest(
        "GET", request.path, select, request.headers, b"", request.user, request.base_url, request.inner
    )


def _create(org: Organization, entity: Entity, request: ApiRequest) -> ApiResponse:
    payload = request.json()
    raw = payload.get(entity.primary_id) if isinstance(payload, dict) else None
    if raw is not None and not isinstance(raw, str):
        raise bad_request(f"'{entity.primary_id}' must be a GUID string.")
    key_text = raw or new_guid(secrets.randbits(128))
    if entity.elastic and isinstance(payload, dict) and isinstance(payload.get("partitionid"), str):
        literal = payload["partitionid"].replace("'", "''")
        key_text = f"{entity.primary_id}={key_text},partitionid='{literal}'"
    key = parse_key(entity, key_text)
    with org.store.lock:
        write_row(org, entity, key, payload, request.user, create_only=True)
        org.stats.written(entity.logical_name, 1, request.user)
    return _written(org, request, entity, key, True)


def _query(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    body, headers = run_query(org, entity, request)
    return json_response(200, body, headers=headers)


def _count(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    """``<set>/$count`` answers the number as plain text (Microsoft Learn: Count rows)."""
    text = str(count_segment(org, entity, request)).encode()
    return ApiResponse(200, {**ODATA_HEADERS, "Content-Type": "text/plain; charset=utf-8"}, text)


def _bulk(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    name = request.path.rsplit(".", 1)[1]
    if name == "UpdateMultiple":
        update_multiple(org, entity, request.json(), request.user)
        return no_content()
    write = create_multiple if name == "CreateMultiple" else upsert_multiple
    ids = write(org, entity, request.json(), request.user)
    context = f"{request.base_url}$metadata#Microsoft.Dynamics.CRM.{name}Response"
    return json_response(200, {"@odata.context": context, "Ids": ids})


def _retrieve(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    """``GET <set>(<key>)``; 304 when ``If-None-Match`` names the current version."""
    body = retrieve(org, entity, row_key(entity, request, parts[1]), request)
    tag = body["@odata.etag"]
    if request.header("if-none-match") in (tag, "*"):
        return ApiResponse(304, {**ODATA_HEADERS, "ETag": tag})
    return json_response(200, body, headers={"ETag": tag})


def _update(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    key = row_key(entity, request, parts[1])
    with org.store.lock:  # counted under the lock, so a change set's rollback sees a settled count
        created = write_row(
            org,
            entity,
            key,
            request.json(),
            request.user,
            if_match=request.header("if-match"),
            if_none_match=request.header("if-none-match"),
        )
        org.stats.written(entity.logical_name, 1, request.user)
    return _written(org, request, entity, key, created)


def _delete(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    delete_row(org, entity, row_key(entity, request, parts[1]), request.user)
    return no_content()


def _associate(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    associate(org, entity, row_key(entity, request, parts[1]), parts[2], request)
    return no_content()


def _disassociate(
    org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]
) -> ApiResponse:
    disassociate(org, entity, row_key(entity, request, parts[1]), parts[2], parts[3], request)
    return no_content()


def _read_reference(
    org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]
) -> ApiResponse:
    """``GET …/<nav>/$ref`` is not implemented: a 400 in the documented shape, as docs/emulator.md says."""
    raise bad_request(f"The emulator does not implement reading a reference ('{parts[2]}/$ref').")


def _property(org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]) -> ApiResponse:
    key = row_key(entity, request, parts[1])
    return get_property(org, entity, key, parts[2], bool(parts[3]), request)


def _write_property(
    org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]
) -> ApiResponse:
    write_property(org, entity, row_key(entity, request, parts[1]), parts[2], request)
    return no_content()


def _create_row(
    org: Organization, entity: Entity, request: ApiRequest, parts: tuple[str, ...]
) -> ApiResponse:
    return _create(org, entity, request)


_HANDLERS: dict[str, Handler] = {
    "query": _query,
    "count": _count,
    "create": _create_row,
    "create_multiple": _bulk,
    "update_multiple": _bulk,
    "upsert_multiple": _bulk,
    "retrieve": _retrieve,
    "update": _update,
    "delete": _delete,
    "associate": _associate,
    "disassociate": _disassociate,
    "read_reference": _read_reference,
    "property": _property,
    "write_property": _write_property,
}
