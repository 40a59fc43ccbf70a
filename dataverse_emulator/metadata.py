"""How metadata reads apply ``$select`` and ``$filter`` (the addresses are in ``metadata_paths``).

Metadata collections are small, so ``$filter`` runs as a Python predicate over the JSON records. Items
created less than the metadata delay ago are hidden unless the request sends ``Consistency: Strong``.

``$select`` and ``$filter`` are checked against the declared type of what is addressed, not against the
records found, so a misspelt property is refused even when a collection happens to be empty (as the
real service, which validates the URL before it runs the query). A single item accepts the properties
of its own type too, as if the request had cast to it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .errors import ApiError, bad_request
from .exchange import ApiRequest
from .odata_filter import And, Expr, Not, Or, QueryError, StringCall, parse_filter, parse_select, to_predicate
from .values import EdmType

_ALWAYS = ("@odata.type", "MetadataId")
"""What every metadata answer carries whatever ``$select`` says."""


def is_strong(request: ApiRequest) -> bool:
    """Whether the read asks to see metadata created within the metadata delay."""
    return (request.header("consistency") or "").lower() == "strong"


def check_options(request: ApiRequest, allowed: set[str]) -> None:
    """Refuse query options a metadata address does not take (``$top``, ``$orderby``, ...)."""
    for name in request.query:
        if name not in allowed:
            raise bad_request(f"The query parameter {name} is not supported")


def _unknown(name: str, type_name: str) -> str:
    return f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."


def selected(request: ApiRequest, known: Collection[str], type_name: str) -> list[str] | None:
    """The ``$select`` names after checking each is a property of the type (``None``: no ``$select``)."""
    text = request.query.get("$select")
    if not text:
        return None
    try:
        names = parse_select(text)
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc
    for name in names:
        if name not in known:
            raise bad_request(_unknown(name, type_name))
    return names


def project(record: Mapping[str, Any], names: list[str] | None) -> dict[str, Any]:
    """One record cut down to ``names``; ``MetadataId`` and ``@odata.type`` always come."""
    if names is None:
        return dict(record)
    chosen = {k: record[k] for k in _ALWAYS if k in record}
    chosen.update({name: record[name] for name in names if name in record})
    return chosen


def single(
    record: Mapping[str, Any], request: ApiRequest, declared: Collection[str], type_name: str
) -> dict[str, Any]:
    """``$select`` on one item: the declared type's properties and the item's own are accepted."""
    known = set(declared) | {k for k in record if not k.startswith("@")}
    return project(record, selected(request, known, type_name))


def _string_calls(expr: Expr) -> list[str]:
    """The string functions a filter uses (metadata queries support none of them)."""
    if isinstance(expr, And | Or):
        return _string_calls(expr.left) + _string_calls(expr.right)
    if isinstance(expr, Not):
        return _string_calls(expr.operand)
    return [expr.func] if isinstance(expr, StringCall) else []


def filtered(
    records: list[dict[str, Any]], text: str, declared: Mapping[str, EdmType | None], type_name: str
) -> list[dict[str, Any]]:
    """The records ``$filter`` keeps, its properties checked against the declared type."""

    def resolve(name: str) -> EdmType:
        edm = declared.get(name)
        if edm is None:
            if name in declared:
                raise QueryError(
                    f"The property '{name}' of 'Microsoft.Dynamics.CRM.{type_name}' is a complex property "
                    "and cannot be compared in $filter."
                )
            raise QueryError(_unknown(name, type_name))
        return edm

    try:
        expr = parse_filter(text)
        for func in _string_calls(expr):
            raise ApiError(
                400, "0x8006088a", f'The "{func}" function isn\'t supported for Metadata Entities.'
            )
        predicate = to_predicate(expr, resolve)
        return [r for r in records if predicate(r)]
    except QueryError as exc:
        raise bad_request(exc.message, exc.code) from exc
