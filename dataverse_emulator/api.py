"""Routing of Web API requests to handlers, shared by top-level requests and ``$batch`` parts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import functions, metadata_paths
from .errors import ApiError, bad_request
from .exchange import ApiRequest, ApiResponse, error_response, json_response, no_content
from .organization import Organization
from .schema import metadata_id
from .table_api import table_request

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
METADATA_KINDS = frozenset(
    {"entity_definition", "entity_definitions", "entity_children", "relationship", "relationship_definitions"}
)
_KEY = r"\(((?:[^()']|'(?:[^']|'')*')*)\)"
"""The key in parentheses after an entity set; quoted values may hold parentheses."""
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^WhoAmI(?:\(\))?$"), "whoami"),
    (
        "GET",
        re.compile(
            r"^systemusers\(([0-9A-Fa-f-]{36})\)/Microsoft\.Dynamics\.CRM\.RetrieveUserPrivileges\(\)$"
        ),
        "retrieve_user_privileges",
    ),
    ("GET", re.compile(r"^RetrieveTotalRecordCount\(EntityNames=(.*)\)$"), "retrieve_total_record_count"),
    ("POST", re.compile(r"^RelationshipDefinitions$"), "create_relationship"),
    ("POST", re.compile(rf"^({_NAME})/Microsoft\.Dynamics\.CRM\.CreateMultiple$"), "create_multiple"),
    ("POST", re.compile(rf"^({_NAME})/Microsoft\.Dynamics\.CRM\.UpdateMultiple$"), "update_multiple"),
    ("POST", re.compile(rf"^({_NAME})/Microsoft\.Dynamics\.CRM\.UpsertMultiple$"), "upsert_multiple"),
    ("GET", re.compile(rf"^({_NAME})/\$count$"), "count"),
    ("PUT", re.compile(rf"^({_NAME}){_KEY}/({_NAME})/\$ref$"), "associate"),
    ("POST", re.compile(rf"^({_NAME}){_KEY}/({_NAME})/\$ref$"), "associate"),
    ("DELETE", re.compile(rf"^({_NAME}){_KEY}/({_NAME})(?:{_KEY})?/\$ref$"), "disassociate"),
    ("GET", re.compile(rf"^({_NAME}){_KEY}/({_NAME})/\$ref$"), "read_reference"),
    ("GET", re.compile(rf"^({_NAME}){_KEY}/({_NAME})(/\$value)?$"), "property"),
    ("PUT", re.compile(rf"^({_NAME}){_KEY}/({_NAME})$"), "write_property"),
    ("DELETE", re.compile(rf"^({_NAME}){_KEY}/({_NAME})$"), "write_property"),
    ("GET", re.compile(rf"^({_NAME}){_KEY}$"), "retrieve"),
    ("PATCH", re.compile(rf"^({_NAME}){_KEY}$"), "update"),
    ("DELETE", re.compile(rf"^({_NAME}){_KEY}$"), "delete"),
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


def _dispatch(org: Organization, request: ApiRequest, kind: str, parts: tuple[str, ...]) -> ApiResponse:
    if kind == "unknown":
        segment = request.path.split("/")[0].split("(")[0] or request.path
        raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")
    if kind == "whoami":
        return json_response(200, _whoami(org, request))
    if kind == "retrieve_user_privileges":
        return json_response(200, functions.user_privileges(org, parts[0], request))
    if kind == "retrieve_total_record_count":
        return json_response(200, functions.total_record_count(org, parts[0], request))
    if kind in METADATA_KINDS:
        return json_response(200, metadata_paths.answer(org, request, parts))
    if kind == "create_relationship":
        return _create_relationship(org, request)
    return table_request(org, request, kind, parts)


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
