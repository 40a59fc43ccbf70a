"""Routing of Web API requests to handlers, shared by top-level requests and ``$batch`` parts."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from . import metadata_paths
from .addressing import RowKey, parse_key
from .errors import ApiError, bad_request
from .exchange import ApiRequest, ApiResponse, error_response, json_response, no_content
from .organization import Organization
from .query import retrieve, run_query
from .schema import Entity, metadata_id
from .values import new_guid
from .writes import clear_reference, delete_row, update_multiple, write_row

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
METADATA_KINDS = frozenset(
    {"entity_definition", "entity_definitions", "entity_children", "relationship", "relationship_definitions"}
)
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^WhoAmI(?:\(\))?$"), "whoami"),
    ("POST", re.compile(r"^RelationshipDefinitions$"), "create_relationship"),
    ("POST", re.compile(rf"^({_NAME})/Microsoft\.Dynamics\.CRM\.UpdateMultiple$"), "update_multiple"),
    ("DELETE", re.compile(rf"^({_NAME})\((.*)\)/({_NAME})/\$ref$"), "disassociate"),
    ("GET", re.compile(rf"^({_NAME})\((.*)\)$"), "retrieve"),
    ("PATCH", re.compile(rf"^({_NAME})\((.*)\)$"), "update"),
    ("DELETE", re.compile(rf"^({_NAME})\((.*)\)$"), "delete"),
    ("GET", re.compile(rf"^({_NAME})$"), "query"),
    ("POST", re.compile(rf"^({_NAME})$"), "create"),
]


def classify(request: ApiRequest) -> tuple[str, tuple[str, ...]]:
    """The kind of request (for routing and counters) and the parts its path names."""
    if request.path == "$batch":
        return ("batch", ()) if request.method == "POST" else ("unknown", ())
    metadata = metadata_paths.PATH.match(request.path) if request.method == "GET" else None
    if metadata:
        parts = tuple(g or "" for g in metadata.groups())
        return metadata_paths.kind_of(parts), parts
    for method, pattern, kind in _ROUTES:
        match = pattern.match(request.path)
        if match and method == request.method:
            return kind, tuple(g or "" for g in match.groups())
    return "unknown", ()


def handle(org: Organization, request: ApiRequest, batch: Callable[[ApiRequest], ApiResponse]) -> ApiResponse:
    """Answer one request; any ``ApiError`` becomes a Dataverse error body."""
    kind, parts = classify(request)
    try:
        if kind == "batch" and request.inner:
            raise bad_request("A $batch request cannot contain another $batch request.")
        response = batch(request) if kind == "batch" else _dispatch(org, request, kind, parts)
    except ApiError as error:
        response = error_response(error)
    response.kind = kind
    return response


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


def _dispatch(org: Organization, request: ApiRequest, kind: str, parts: tuple[str, ...]) -> ApiResponse:
    if kind == "unknown":
        segment = request.path.split("/")[0].split("(")[0] or request.path
        raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")
    if kind == "whoami":
        return json_response(200, _whoami(org, request))
    if kind in METADATA_KINDS:
        return json_response(200, metadata_paths.answer(org, request, parts))
    if kind == "create_relationship":
        return _create_relationship(org, request)
    entity = _table(org, parts[0])
    if kind == "query":
        body, headers = run_query(org, entity, request)
        return json_response(200, body, headers=headers)
    if kind == "create":
        return _create(org, entity, request)
    if kind == "update_multiple":
        update_multiple(org, entity, request.json(), request.user)
        return no_content()
    key = parse_key(entity, parts[1])
    if kind == "retrieve":
        return json_response(200, retrieve(org, entity, key, request))
    if kind == "update":
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
    if kind == "delete":
        delete_row(org, entity, key, request.user)
        return no_content()
    clear_reference(org, entity, key, parts[2], request.user)
    return no_content()


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


def _create_relationship(org: Organization, request: ApiRequest) -> ApiResponse:
    rel, display = org.catalog.validate_relationship(request.json())
    rel.solution = request.header("mscrm.solutionuniquename")
    org.create_relationship(rel, display)
    return no_content({"OData-EntityId": f"{request.base_url}RelationshipDefinitions({rel.metadata_id})"})


def _whoami(org: Organization, request: ApiRequest) -> dict[str, Any]:
    return {
        "@odata.context": f"{request.base_url}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": metadata_id("businessunit", "root"),
        "UserId": metadata_id("systemuser", request.user),
        "OrganizationId": org.organization_id,
    }
