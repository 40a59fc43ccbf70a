"""The control API under ``/_emulator/``: what tests and benchmarks use to set up and check a scene.

Not part of Dataverse: no token is needed, and it answers plain JSON (errors as ``{"error": "..."}``).

- ``GET health``; ``GET stats``, ``POST stats/reset``: request counts by kind, rows read and written;
- ``POST reset`` ``{contacts, leads, seed, modes}``: rebuild and reseed (seed-time modes go here);
- ``GET modes``, ``PATCH modes`` ``{name: value}``: the behaviour switches;
- ``POST reunify`` ``{fraction, seed, defer_profiles, spread_seconds}``; ``POST publish-deferred``;
- ``GET sources``: the seeded CI-D data sources and the Dataverse table each came from;
- ``GET links?table=contact[&lookup=...][&rows=all|wrong|none]``: the truth, row by row;
- ``GET clock``, ``POST clock`` ``{advance_seconds}``: server time.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from werkzeug.wrappers import Request

from .generator import SOURCES, publish_deferred, reunify, seed_organization, sync_message_filters
from .modes import ModeError, Modes
from .organization import Organization, SeedParams, Stats
from .truth import links, lookup_for, summarize
from .values import Precision, format_datetime

Answer = tuple[int, dict[str, Any]]


class ControlError(ValueError):
    """A bad control request (answered 400)."""


def _body(request: Request) -> dict[str, Any]:
    raw = request.get_data() or b"{}"
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def _int(body: dict[str, Any], name: str, default: int, low: int = 0) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ControlError(f"{name!r} must be an integer >= {low}")
    return value


def handle_control(org: Organization, method: str, path: str, request: Request) -> Answer:
    """Answer one control request."""
    try:
        return _route(org, method, path.strip("/"), request)
    except (ControlError, ModeError) as exc:
        return 400, {"error": str(exc)}


def _route(org: Organization, method: str, path: str, request: Request) -> Answer:
    if (method, path) == ("GET", "health"):
        return 200, {"status": "ok"}
    if (method, path) == ("GET", "stats"):
        return 200, org.stats.to_json()
    if (method, path) == ("POST", "stats/reset"):
        org.stats = Stats()
        return 200, org.stats.to_json()
    if (method, path) == ("POST", "reset"):
        return _reset(org, _body(request))
    if (method, path) == ("GET", "modes"):
        return 200, org.modes.to_json()
    if (method, path) == ("PATCH", "modes"):
        org.modes.update(_body(request), allow_seed=False)
        sync_message_filters(org)
        return 200, org.modes.to_json()
    if (method, path) == ("POST", "reunify"):
        return _reunify(org, _body(request))
    if (method, path) == ("POST", "publish-deferred"):
        return 200, {"published": publish_deferred(org)}
    if (method, path) == ("GET", "sources"):
        return 200, {"sources": [asdict(s) for s in SOURCES]}
    if (method, path) == ("GET", "links"):
        return _links(
            org, request.args.get("table", ""), request.args.get("lookup"), request.args.get("rows", "wrong")
        )
    if path == "clock" and method in ("GET", "POST"):
        if method == "POST":
            seconds = _body(request).get("advance_seconds", 0)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ControlError("'advance_seconds' must be a number >= 0")
            org.clock.advance(seconds)
        now = org.clock.now()
        return 200, {"now": format_datetime(now, Precision.MILLISECOND), "now_micros": now}
    return 404, {"error": f"no control operation {method} /_emulator/{path}"}


def _reset(org: Organization, body: dict[str, Any]) -> Answer:
    params = SeedParams(
        contacts=_int(body, "contacts", org.seed.contacts),
        leads=_int(body, "leads", org.seed.leads),
        seed=_int(body, "seed", org.seed.seed),
    )
    modes = body.get("modes", {})
    if not isinstance(modes, dict):
        raise ControlError("'modes' must be an object")
    fresh = Modes()
    fresh.update(modes, allow_seed=True)
    with org.store.lock:
        org.modes, org.seed, org.stats = fresh, params, Stats()
        counts = seed_organization(org)
    return 200, {"seeded": counts, "modes": org.modes.to_json()}


def _reunify(org: Organization, body: dict[str, Any]) -> Answer:
    fraction = body.get("fraction", 0.01)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ControlError("'fraction' must be a number in (0, 1]")
    spread = body.get("spread_seconds", 0)
    if isinstance(spread, bool) or not isinstance(spread, int | float) or spread < 0:
        raise ControlError("'spread_seconds' must be a number >= 0")
    counts = reunify(
        org,
        fraction=float(fraction),
        seed=_int(body, "seed", 1),
        defer_profiles=bool(body.get("defer_profiles", False)),
        spread_seconds=float(spread),
    )
    return 200, {"changes": counts, "at": format_datetime(org.clock.now(), Precision.MILLISECOND)}


def _links(org: Organization, table: str, lookup: str | None, rows: str) -> Answer:
    if table not in ("contact", "lead"):
        raise ControlError("'table' must be contact or lead")
    if rows not in ("all", "wrong", "none"):
        raise ControlError("'rows' must be all, wrong or none")
    rel = lookup_for(org, table, lookup)
    partitioned = rel is not None and f"{rel.referencing_attribute}pid" in org.entity(table).attributes
    if rows == "all":
        every = list(links(org, table, lookup))
        counts, _ = summarize(iter(every), partitioned)
        listed = every
    else:
        counts, wrong = summarize(links(org, table, lookup), partitioned)
        listed = wrong if rows == "wrong" else []
    return 200, {
        "table": table,
        "lookup": rel.referencing_attribute if rel else None,
        "navigation_property": rel.navigation_property if rel else None,
        "summary": counts,
        "rows": listed,
    }
