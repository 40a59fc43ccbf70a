"""Collection queries and single-row reads: ``$select``, ``$filter``, ``$orderby``, ``$top`` and paging.

Paging follows Dataverse: ``Prefer: odata.maxpagesize`` (default and most 5,000; a larger value is
ignored), ``Preference-Applied`` when honoured, and an ``@odata.nextLink`` whose ``$skiptoken`` is an
opaque cookie. What a next page returns when rows change between pages depends on the ``paging`` mode
(see ``modes.Modes.paging``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as urlquote

from .addressing import RowKey
from .errors import ELASTIC_EXPAND, ApiError, bad_request, not_found
from .exchange import ApiRequest
from .odata_filter import Column, QueryError, parse_filter, parse_orderby, parse_select, to_sql
from .organization import Organization
from .paging import decode_token, encode_token, page_size, short_page
from .rows import render, stored_column
from .schema import QUERY_PATHS, Attribute, Entity
from .store import quote

_SAFE = ",'()/:=@*$"
_COOKIE_SAFE = "=/"
"""Characters the outer paging cookie keeps literal in a next link, as Dataverse's links show them."""
KNOWN_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$skiptoken", "$expand", "$skip", "$count"}


def query_error(exc: QueryError) -> ApiError:
    """A parse or type error in a query option, as a 400."""
    return bad_request(exc.message, exc.code)


def unknown_property(entity: Entity, name: str) -> QueryError:
    """The error Dataverse gives for a property the table does not have."""
    return QueryError(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity.logical_name}'."
    )


@dataclass
class Plan:
    """A parsed query: the columns to show, the SQL condition and the order."""

    entity: Entity
    attributes: list[Attribute]
    where: str
    params: list[Any]
    order: list[tuple[str, bool]]
    fingerprint: str


def readable(org: Organization, entity: Entity, now: int) -> dict[str, Attribute]:
    """The columns a query may name, by their query name (``_x_value`` for lookups)."""
    return {
        a.query_name: a
        for a in entity.attributes.values()
        if org.catalog.attribute(entity, a.logical_name, now, False)
    }


def select_columns(org: Organization, entity: Entity, text: str | None, now: int) -> list[Attribute]:
    """The columns of ``$select`` (all readable ones without it); the primary key is always included."""
    columns = readable(org, entity, now)
    if not text:
        return list(columns.values())
    try:
        names = parse_select(text)
    except QueryError as exc:
        raise query_error(exc) from exc
    chosen = [entity.attributes[entity.primary_id]]
    for name in names:
        if name not in columns:
            raise query_error(unknown_property(entity, name))
        if columns[name] not in chosen:
            chosen.append(columns[name])
    return chosen


def plan_query(org: Organization, entity: Entity, request: ApiRequest, now: int) -> Plan:
    """Parse and check every query option; raise a 400 for anything Dataverse would refuse."""
    options = request.query
    for name in options:
        if name not in KNOWN_OPTIONS:
            raise bad_request(f"The query parameter '{name}' is not supported.")
    if "$skip" in options:
        raise bad_request("The query parameter $skip is not supported.")
    if "$expand" in options:
        if entity.elastic:
            raise bad_request(
                "Expand is not supported for multi-row queries on elastic tables.", ELASTIC_EXPAND
            )
        raise bad_request("The emulator does not implement $expand; select _<lookup>_value instead.")
    if options.get("$count", "false") not in ("true", "false"):
        raise bad_request(f"Invalid value '{options['$count']}' for $count: true or false is required.")
    attributes = select_columns(org, entity, options.get("$select"), now)
    columns = readable(org, entity, now)
    paths = QUERY_PATHS.get(entity.logical_name, {})

    def resolve(name: str) -> Column:
        if name in paths:
            return Column(quote(paths[name]), entity.attributes[paths[name]].type.edm)
        if name not in columns:
            raise unknown_property(entity, name)
        return Column(quote(stored_column(columns[name])), columns[name].type.edm)

    where, params = "1", list[Any]()
    try:
        if options.get("$filter"):
            where, params = to_sql(parse_filter(options["$filter"]), resolve)
        order = parse_orderby(options["$orderby"]) if options.get("$orderby") else []
        for name, _ in order:
            resolve(name)
    except QueryError as exc:
        raise query_error(exc) from exc
    order = [(stored_column(columns[n]) if n in columns else paths[n], desc) for n, desc in order]
    if entity.primary_id not in [n for n, _ in order]:
        order.append((entity.primary_id, False))
    fingerprint = hashlib.sha256(
        json.dumps([entity.logical_name, options.get("$select"), options.get("$filter"), order]).encode()
    ).hexdigest()[:16]
    return Plan(entity, attributes, where, params, order, fingerprint)


def _after(plan: Plan, last: list[Any]) -> tuple[str, list[Any]]:
    """SQL for 'sorts after the row ``last``' under ``plan.order`` (NULLs first ascending, as SQLite)."""
    ors: list[str] = []
    params: list[Any] = []
    for i, (name, desc) in enumerate(plan.order):
        col = quote(name)
        ties = [f"{quote(n)} IS ?" for n, _ in plan.order[:i]]
        value = last[i]
        if value is None:
            beyond = "0" if desc else f"{col} IS NOT NULL"
            beyond_params: list[Any] = []
        else:
            beyond = f"({col} < ? OR {col} IS NULL)" if desc else f"{col} > ?"
            beyond_params = [value]
        ors.append("(" + " AND ".join([*ties, beyond]) + ")")
        params += last[:i] + beyond_params
    return "(" + " OR ".join(ors) + ")", params


def run_query(
    org: Organization, entity: Entity, request: ApiRequest
) -> tuple[dict[str, Any], dict[str, str]]:
    """Answer a collection GET: one page of rows, and a next link while more remain."""
    now = org.clock.now()
    plan = plan_query(org, entity, request, now)
    size, honoured = page_size(request)
    top = request.query.get("$top")
    if top is not None and (not top.isdigit() or int(top) <= 0):
        raise bad_request(f"Invalid value '{top}' for $top: a positive integer is required.")
    token = request.query.get("$skiptoken")
    state: dict[str, Any] = (
        decode_token(token, plan.fingerprint, len(plan.order))
        if token
        else {"page": 1, "served": 0, "mode": org.modes.paging}
    )
    if top is not None and "odata.maxpagesize" in request.prefer():
        top = None  # documented: with Prefer: odata.maxpagesize, $top is ignored
    seed = org.modes.short_pages_seed
    served = size if seed is None else short_page(seed, plan.fingerprint, int(state["page"]), size)
    limit = served if top is None else min(served, int(top) - int(state["served"]))
    rows = _fetch(org, plan, request.user, now, state, limit + 1)
    more = len(rows) > limit and (top is None or int(state["served"]) + limit < int(top))
    rows = rows[:limit]
    navigation = _navigation(org, entity, now) if _annotations(request) else None
    values = [render(entity, r, plan.attributes, org.modes.precision, navigation=navigation) for r in rows]
    org.stats.read(entity.logical_name, len(values), request.user)
    select = request.query.get("$select")
    body: dict[str, Any] = {
        "@odata.context": f"{request.base_url}$metadata#{entity.entity_set}"
        + (f"({select})" if select else ""),
        "value": values,
    }
    if more and rows:
        following = {
            "q": plan.fingerprint,
            "page": state["page"] + 1,
            "served": state["served"] + len(rows),
            "mode": state["mode"],
            "last": [rows[-1][n] for n, _ in plan.order],
            "snap": state.get("snap"),
            "seq": rows[-1][_SEQ] if state.get("snap") else 0,
        }
        body["@odata.nextLink"] = next_link(request, entity, encode_token(following))
    elif state.get("snap"):
        org.store.execute("DELETE FROM _snapshots WHERE id = ?", (state["snap"],))
    if request.query.get("$count") == "true":
        body.update(count_annotations(count_rows(org, plan, request.user, now)))
    return body, _applied(request, size if honoured else None)


def _applied(request: ApiRequest, size: int | None) -> dict[str, str]:
    """The ``Preference-Applied`` header for the preferences a query honoured."""
    applied = []
    if _annotations(request):
        applied.append(f'odata.include-annotations="{request.prefer()["odata.include-annotations"]}"')
    if size is not None:
        applied.append(f"odata.maxpagesize={size}")
    return {"Preference-Applied": ",".join(applied)} if applied else {}


MAX_COUNT = 5000
"""The most ``$count`` counts: a larger result answers 5,000 and says the limit was exceeded."""


def count_rows(org: Organization, plan: Plan, user: str, now: int) -> int:
    """How many rows the query matches as ``user`` sees them, counting at most one past ``MAX_COUNT``."""
    visible, visible_params = org.visible_sql(plan.entity, user, now)
    rows = org.store.fetch(
        f"SELECT count(*) FROM (SELECT 1 FROM {quote(plan.entity.logical_name)} "
        f"WHERE {visible} AND ({plan.where}) LIMIT ?)",
        [*visible_params, *plan.params, MAX_COUNT + 1],
    )
    return int(rows[0][0])


def count_annotations(count: int) -> dict[str, Any]:
    """The annotations ``$count=true`` adds (Microsoft Learn: Count rows)."""
    return {
        "@odata.count": min(count, MAX_COUNT),
        "@Microsoft.Dynamics.CRM.totalrecordcount": -1,
        "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded": count > MAX_COUNT,
    }


def count_segment(org: Organization, entity: Entity, request: ApiRequest) -> int:
    """``GET <set>/$count`` (with ``$filter`` if given): the plain count, at most 5,000."""
    now = org.clock.now()
    for name in request.query:
        if name != "$filter":
            raise bad_request(f"The query parameter '{name}' is not supported with /$count.")
    return min(count_rows(org, plan_query(org, entity, request, now), request.user, now), MAX_COUNT)


_SEQ = "_snapshot_seq"
"""The column a snapshot page carries each row's position in, so the next page starts after it."""


def _fetch(
    org: Organization, plan: Plan, user: str, now: int, state: dict[str, Any], limit: int
) -> list[Any]:
    """The next ``limit`` rows of a query under the cursor's paging mode, as ``user`` sees them now.

    A snapshot keeps the first page's membership and order, but a later page still shows only rows
    the reader can see at that moment (an elastic row rewritten by another user during the read lag
    is absent, as it is from every other read).
    """
    visible, visible_params = org.visible_sql(plan.entity, user, now)
    table = quote(plan.entity.logical_name)
    where = f"{visible} AND ({plan.where})"
    params = [*visible_params, *plan.params]
    order_sql = ", ".join(f"{quote(n)} {'DESC' if d else 'ASC'}" for n, d in plan.order)
    mode = state["mode"]
    if mode == "snapshot":
        with org.store.lock:
            if state.get("snap") is None:
                state["snap"] = secrets.token_hex(10)
                state["seq"] = 0
                org.store.execute(
                    "INSERT INTO _snapshots (id, seq, key) "
                    f"SELECT ?, ROW_NUMBER() OVER (ORDER BY {order_sql}), "
                    f"{quote(plan.entity.primary_id)} FROM {table} WHERE {where}",
                    [state["snap"], *params],
                )
            return org.store.fetch(
                f"SELECT t.*, s.seq AS {_SEQ} FROM _snapshots s "
                f"JOIN {table} t ON t.{quote(plan.entity.primary_id)} = s.key "
                f"WHERE s.id = ? AND s.seq > ? AND {visible} ORDER BY s.seq LIMIT ?",
                [state["snap"], state["seq"], *visible_params, limit],
            )
    if mode == "offset":
        return org.store.fetch(
            f"SELECT * FROM {table} WHERE {where} ORDER BY {order_sql} LIMIT ? OFFSET ?",
            [*params, limit, state["served"]],
        )
    if state.get("last") is not None:
        after, after_params = _after(plan, state["last"])
        where, params = f"{where} AND {after}", [*params, *after_params]
    source = table
    with org.store.lock:
        if walk_the_key(org, plan, where, params):
            source = f"{table} INDEXED BY {quote(key_index(plan.entity))}"
        return org.store.fetch(
            f"SELECT * FROM {source} WHERE {where} ORDER BY {order_sql} LIMIT ?", [*params, limit]
        )


WIDE = 20_000
"""Rows a key-ordered query must match (after its key bound) before its page is read in key order."""
_SORTS: dict[str, bool] = {}
"""Whether SQLite's own plan for a query text sorts its result (plans do not depend on the values)."""


def key_index(entity: Entity) -> str:
    """The name of a table's unique index on its primary key (``store.Store.create_table``)."""
    return f"ix_{entity.logical_name}_key"


def walk_the_key(org: Organization, plan: Plan, where: str, params: list[Any], *, wide: int = WIDE) -> bool:
    """Whether a page ordered by the primary key is better read by walking the key index in order.

    SQLite, without statistics, reads a two-sided ``modifiedon`` range through the ``(modifiedon,
    key)`` index, then sorts every matching row to return the first few thousand by key: on every
    page, so paging through a window that holds most of a million rows is quadratic. When the query
    would sort and matches at least ``wide`` rows (counted cheaply, stopping there), walking the
    key index from the page's key bound and testing each row finds a page after reading about
    ``page × table / matches`` rows instead. A narrow window keeps SQLite's plan, which reads only the
    window.
    """
    if plan.order != [(plan.entity.primary_id, False)] or where == "1":
        return False
    table = quote(plan.entity.logical_name)
    text = f"SELECT * FROM {table} WHERE {where} ORDER BY {quote(plan.entity.primary_id)} LIMIT ?"
    sorts = _SORTS.get(text)
    if sorts is None:
        steps = org.store.fetch(f"EXPLAIN QUERY PLAN {text}", [*params, 1])
        sorts = any("TEMP B-TREE FOR ORDER BY" in str(step["detail"]) for step in steps)
        if len(_SORTS) > 1000:
            _SORTS.clear()
        _SORTS[text] = sorts
    if not sorts:
        return False
    count = org.store.fetch(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT ?)", [*params, wide]
    )
    return int(count[0][0]) >= wide


def next_link(request: ApiRequest, entity: Entity, token: str) -> str:
    """The absolute next link: the same query options plus the new ``$skiptoken``."""
    parts = [
        f"{name}={urlquote(value, safe=_SAFE)}"
        for name, value in request.query.items()
        if name != "$skiptoken"
    ]
    parts.append(f"$skiptoken={urlquote(token, safe=_COOKIE_SAFE)}")
    return f"{request.base_url}{entity.entity_set}?{'&'.join(parts)}"


def _annotations(request: ApiRequest) -> bool:
    wanted = request.prefer().get("odata.include-annotations", "")
    return wanted == "*" or "Microsoft.Dynamics.CRM" in wanted


def _navigation(org: Organization, entity: Entity, now: int) -> dict[str, str]:
    return {
        r.referencing_attribute: r.navigation_property for r in org.catalog.lookups_to(entity, now, False)
    }


def find_row(org: Organization, entity: Entity, key: RowKey, user: str, now: int) -> Any:
    """The row a key names, as the caller can see it, honouring partition ids; 404 otherwise."""
    row = org.store.get(entity, key.id)
    if row is not None and entity.elastic:
        visible = row["_visible_at"] <= now or row["_writer"] == user
        stored_pid = row["partitionid"]
        if key.partition_id is not None:
            matches = stored_pid == key.partition_id
        else:
            matches = stored_pid is None or org.modes.bind_without_partition == "resolve"
        if not (visible and matches):
            row = None
    if row is None:
        raise not_found(entity.logical_name, key.id)
    return row


def retrieve(org: Organization, entity: Entity, key: RowKey, request: ApiRequest) -> dict[str, Any]:
    """Answer ``GET <set>(<key>)``."""
    now = org.clock.now()
    for name in request.query:
        if name not in ("$select", "$expand") and name.lower() != "partitionid":
            raise bad_request(f"The query parameter '{name}' is not supported on a single row.")
    if "$expand" in request.query:
        raise bad_request("The emulator does not implement $expand; select _<lookup>_value instead.")
    attributes = select_columns(org, entity, request.query.get("$select"), now)
    row = find_row(org, entity, key, request.user, now)
    navigation = _navigation(org, entity, now) if _annotations(request) else None
    org.stats.read(entity.logical_name, 1, request.user)
    body = render(entity, row, attributes, org.modes.precision, navigation=navigation)
    select = request.query.get("$select")
    body["@odata.context"] = f"{request.base_url}$metadata#{entity.entity_set}" + (
        f"({select})/$entity" if select else "/$entity"
    )
    return body
