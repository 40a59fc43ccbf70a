"""The Web API functions the preflight calls: a user's privileges, and the tables' total row counts.

``GET systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`` answers the user's
``RolePrivileges`` (name, id, depth, business unit). Every user holds every privilege of every table
at ``Global`` depth, plus the customization and bypass privileges, like a System Administrator, unless
the ``privileges`` mode takes one away (``null``) or lowers its depth for that user. The privileges
are reported, not enforced: writes do not check them.

``GET RetrieveTotalRecordCount(EntityNames=['contact','lead'])`` answers
``EntityRecordCountCollection`` (``Keys``, ``Values``): the rows of each table, counted now (the
service answers a snapshot of the last 24 hours).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, bad_request, not_found
from .exchange import ApiRequest
from .organization import Organization
from .schema import ENTITY_PRIVILEGE_TYPES, metadata_id, privilege_name
from .store import quote

GLOBAL_PRIVILEGES = (
    "prvBypassCustomBusinessLogic",
    "prvBypassCustomPlugins",
    "prvCreateAttribute",
    "prvWriteAttribute",
    "prvCreateRelationship",
    "prvWriteRelationship",
    "prvWriteEntity",
)
"""Privileges that belong to no row table: bypassing custom logic, and the customization ones."""
_CRM = "Microsoft.Dynamics.CRM."
_NAMES = re.compile(r"^\[\s*('(?:[^']|'')*'(?:\s*,\s*'(?:[^']|'')*')*)?\s*\]$")


def user_privileges(org: Organization, user_id: str, request: ApiRequest) -> dict[str, Any]:
    """The ``RetrieveUserPrivilegesResponse`` of the user with this id."""
    user = _user(org, user_id.lower(), request.user)
    held: dict[str, str] = {}
    for entity in org.catalog.entities.values():
        for kind in ENTITY_PRIVILEGE_TYPES:
            held[privilege_name(kind, entity.schema_name)] = "Global"
    held.update(dict.fromkeys(GLOBAL_PRIVILEGES, "Global"))
    for name, depth in org.modes.privileges.get(user, {}).items():
        if depth is None:
            held.pop(name, None)
        else:
            held[name] = depth
    unit = metadata_id("businessunit", "root")
    return {
        "@odata.context": f"{request.base_url}$metadata#{_CRM}RetrieveUserPrivilegesResponse",
        "RolePrivileges": [
            {
                "Depth": depth,
                "PrivilegeId": metadata_id("privilege", name),
                "BusinessUnitId": unit,
                "PrivilegeName": name,
            }
            for name, depth in sorted(held.items())
        ],
    }


def _user(org: Organization, user_id: str, caller: str) -> str:
    known = [caller, *org.modes.privileges, *(org.modes.users or [])]
    for user in known:
        if metadata_id("systemuser", user) == user_id:
            return user
    raise not_found("systemuser", user_id)


def total_record_count(org: Organization, names_text: str, request: ApiRequest) -> dict[str, Any]:
    """The ``RetrieveTotalRecordCountResponse`` for ``EntityNames=[...]``."""
    match = _NAMES.match(names_text.strip())
    if match is None:
        raise bad_request("EntityNames must be a list of quoted logical names, e.g. ['contact'].")
    names = [n.strip()[1:-1].replace("''", "'") for n in (match.group(1) or "").split(",") if n.strip()]
    values = []
    for name in names:
        entity = org.catalog.entity(name)
        if entity is None:
            raise ApiError(404, "0x80040217", f"The entity with a name = '{name}' was not found.")
        values.append(org.store.fetch(f"SELECT count(*) FROM {quote(entity.logical_name)}")[0][0])
    return {
        "@odata.context": f"{request.base_url}$metadata#{_CRM}RetrieveTotalRecordCountResponse",
        "EntityRecordCountCollection": {
            "Count": len(names),
            "IsReadOnly": False,
            "Keys": names,
            "Values": values,
        },
    }
