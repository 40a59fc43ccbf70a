"""Single property values: ``GET``, ``PUT`` and ``DELETE`` of ``<set>(<id>)/<property>`` and ``/$value``.

Retrieving one property answers ``{"@odata.context": …, "value": …}`` (or the raw value with
``/$value``, and 204 when it is null); ``PUT`` with ``{"value": …}`` writes it and ``DELETE`` empties it,
both as a one-column ``PATCH`` with ``If-Match: *`` would (Microsoft Learn: Retrieve a table row using
the Web API, Update and delete table rows using the Web API: "Update a single property value" and
"Delete a single property value").
"""

from __future__ import annotations

from typing import Any

from .addressing import RowKey
from .errors import ApiError, bad_request
from .exchange import ODATA_HEADERS, ApiRequest, ApiResponse, json_response, no_content
from .organization import Organization
from .query import find_row, readable, unknown_property
from .references import collection_navigation
from .rows import stored_column, to_json_value
from .schema import Attribute, AttributeType, Entity
from .writes import IGNORED_ON_WRITE, write_row


def _attribute(org: Organization, entity: Entity, name: str) -> Attribute:
    found = readable(org, entity, org.clock.now()).get(name)
    if found is not None:
        return found
    if org.catalog.navigation(entity, name, org.clock.now()) or collection_navigation(org, entity, name):
        raise bad_request(
            f"The emulator does not implement reading the navigation property '{name}'; "
            "select _<lookup>_value instead, or query the related table."
        )
    raise ApiError(400, "0x80060888", unknown_property(entity, name).message)


def get_property(
    org: Organization, entity: Entity, key: RowKey, name: str, raw: bool, request: ApiRequest
) -> ApiResponse:
    """``GET <set>(<id>)/<property>`` (``raw``: ``/$value``)."""
    attribute = _attribute(org, entity, name)
    row = find_row(org, entity, key, request.user, org.clock.now())
    org.stats.read(entity.logical_name, 1, request.user)
    value = to_json_value(attribute, row[stored_column(attribute)], org.modes.precision)
    if value is None:
        return no_content()
    if raw:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return ApiResponse(200, {**ODATA_HEADERS, "Content-Type": "text/plain; charset=utf-8"}, text.encode())
    context = f"{request.base_url}$metadata#{entity.entity_set}({key.id})/{name}"
    return json_response(200, {"@odata.context": context, "value": value})


def write_property(org: Organization, entity: Entity, key: RowKey, name: str, request: ApiRequest) -> None:
    """``PUT <set>(<id>)/<property>`` with ``{"value": …}``, or ``DELETE`` (the value becomes null)."""
    attribute = _attribute(org, entity, name)
    if attribute.type is AttributeType.LOOKUP:
        raise bad_request(
            f"'{name}' is a lookup: set it with '<navigation property>@odata.bind' or …/$ref, "
            "and clear it with DELETE …/<navigation property>/$ref."
        )
    if name == entity.primary_id or name in IGNORED_ON_WRITE:
        raise bad_request(f"The property '{name}' cannot be changed.")
    value: Any = None
    if request.method == "PUT":
        body = request.json()
        if not isinstance(body, dict) or set(body) != {"value"}:
            raise bad_request('A single-property PUT needs a body {"value": …}.')
        value = body["value"]
    with org.store.lock:
        find_row(org, entity, key, request.user, org.clock.now())
        write_row(org, entity, key, {name: value}, request.user, if_match="*")
        org.stats.written(entity.logical_name, 1, request.user)
