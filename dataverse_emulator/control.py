"""The control API under ``/_emulator/``: what tests and benchmarks use to set up and check a scene.

Not part of Dataverse: no token is needed, and it answers plain JSON (errors as ``{"error": "..."}``).

- ``GET health``; ``GET stats``, ``POST stats/reset``: request counts by kind, rows read and written;
- ``POST reset`` ``{contacts, leads, seed, modes}``: rebuild and reseed (seed-time modes go here);
- ``GET modes``, ``PATCH modes`` ``{name: value}``: the behaviour switches;
- ``POST reunify`` ``{fraction, seed, defer_profiles, spread_seconds}``: the change counts and the time
  changed rows were stamped at; ``POST publish-deferred``;
- ``GET sources``: the seeded CI-D data sources and the Dataverse table each came from;
- ``GET links?table=contact[&lookup=...][&rows=all|wrong|none]``: the truth: a summary by outcome and
  the rows asked for, each with its ``outcome`` (``lookup`` is needed when the table has several);
- ``GET clock``, ``POST clock`` ``{advance_seconds}``: server time;
- ``POST plugin-steps`` ``{name, table, message, stage, mode, filteringattributes, enabled}``, ``POST flows``
  ``{name, table, message, filteringattributes, activated, clientdata}``: register a custom plug-in step or a
  cloud flow with a Dataverse trigger, as an administrator would (``events``); the answer has its ``id``;
- ``GET limits``, ``PATCH limits`` ``{name: value}``: service protection limits, cost model and time
  factor, with each user's current window (``usage``); ``GET``/``PUT``/``DELETE faults``
  ``{rules, seed}``: injected faults (see docs/emulator-limits.md). A reset turns both off.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from werkzeug.wrappers import Request

from .events import EventError, register_flow, register_step
from .faults import FaultError
from .generator import (
    SOURCES,
    orphan_shares,
    publish_deferred,
    reunify,
    seed_organization,
    sync_message_filters,
)
from .limits import LimitsError
from .modes import ModeError, Modes
from .organization import Organization, SeedParams, Stats
from .truth import NOT_AS_EXPECTED, OUTCOMES, LinkLookupError, links, lookup_for, summarize
from .values import Precision, format_datetime

Answer = tuple[int, dict[str, Any]]
STEP_FIELDS = ("name", "table", "message", "stage", "mode", "filteringattributes", "enabled")
FLOW_FIELDS = ("name", "table", "message", "filteringattributes", "activated", "clientdata")
MAX_ADVANCE_SECONDS = 100 * 365 * 86_400
"""The most one clock step may move (or a spread reach back): dates stay within what they can show."""
log = logging.getLogger(__name__)


class ControlError(ValueError):
    """A bad control request (answered 400)."""


def _body(request: Request, known: tuple[str, ...] | None) -> dict[str, Any]:
    """The JSON object a request carries (none: empty); a field not in ``known`` is refused, not ignored.

    ``known=None`` leaves the names to the caller (modes names them in their own message).
    """
    raw = request.get_data() or b"{}"
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise ControlError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    if known is not None:
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise ControlError(f"unknown field {unknown[0]!r}; known: {', '.join(known)}")
    return body


def _int(body: dict[str, Any], name: str, default: int, low: int = 0) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ControlError(f"{name!r} must be an integer >= {low}")
    return value


def handle_control(org: Organization, method: str, path: str, request: Request) -> Answer:
    """Answer one control request; a failure answers JSON too, so a client can always read it."""
    try:
        return _route(org, method, path.strip("/"), request)
    except (ControlError, ModeError, LinkLookupError, LimitsError, FaultError, EventError) as exc:
        return 400, {"error": str(exc)}
    except Exception as exc:
        log.exception("control request %s /_emulator/%s failed", method, path)
        return 500, {"error": f"{type(exc).__name__}: {exc}"}


def _route(org: Organization, method: str, path: str, request: Request) -> Answer:
    if (method, path) == ("GET", "health"):
        return 200, {"status": "ok"}
    if (method, path) == ("GET", "stats"):
        return 200, org.stats.to_json()
    if (method, path) == ("POST", "stats/reset"):
        org.stats = Stats()
        return 200, org.stats.to_json()
    if (method, path) == ("POST", "reset"):
        return _reset(org, _body(request, ("contacts", "leads", "seed", "modes", "orphans")))
    if (method, path) == ("GET", "modes"):
        return 200, org.modes.to_json()
    if (method, path) == ("PATCH", "modes"):
        org.modes.update(_body(request, None), allow_seed=False)
        sync_message_filters(org)
        return 200, org.modes.to_json()
    if (method, path) == ("POST", "reunify"):
        return _reunify(org, _body(request, ("fraction", "seed", "defer_profiles", "spread_seconds")))
    if (method, path) == ("POST", "publish-deferred"):
        return 200, {"published": publish_deferred(org)}
    if (method, path) == ("GET", "sources"):
        return 200, {"sources": [asdict(s) for s in SOURCES]}
    if (method, path) == ("GET", "links"):
        return _links(
            org, request.args.get("table", ""), request.args.get("lookup"), request.args.get("rows", "wrong")
        )
    if (method, path) == ("POST", "plugin-steps"):
        return 200, {"id": register_step(org, _body(request, STEP_FIELDS))}
    if (method, path) == ("POST", "flows"):
        return 200, {"id": register_flow(org, _body(request, FLOW_FIELDS))}
    if path == "limits" and method in ("GET", "PATCH"):
        return _limits(org, method, request)
    if path == "faults" and method in ("GET", "PUT", "DELETE"):
        return _faults(org, method, request)
    if path == "clock" and method in ("GET", "POST"):
        return _clock(org, method, request)
    return 404, {"error": f"no control operation {method} /_emulator/{path}"}


def _limits(org: Organization, method: str, request: Request) -> Answer:
    if method == "PATCH":
        org.limits.configure(_body(request, None))
    return 200, {**org.limits.config.to_json(), "usage": org.limits.usage()}


def _faults(org: Organization, method: str, request: Request) -> Answer:
    if method == "PUT":
        org.faults.replace(_body(request, None))
    elif method == "DELETE":
        org.faults.clear()
    return 200, org.faults.to_json()


def _clock(org: Organization, method: str, request: Request) -> Answer:
    if method == "POST":
        seconds = _body(request, ("advance_seconds",)).get("advance_seconds", 0)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_ADVANCE_SECONDS
        ):
            raise ControlError(f"'advance_seconds' must be a number from 0 to {MAX_ADVANCE_SECONDS}")
        org.clock.advance(seconds)
    now = org.clock.now()
    return 200, {"now": format_datetime(now, Precision.MILLISECOND), "now_micros": now}


def _reset(org: Organization, body: dict[str, Any]) -> Answer:
    params = SeedParams(
        contacts=_int(body, "contacts", org.seed.contacts),
        leads=_int(body, "leads", org.seed.leads),
        seed=_int(body, "seed", org.seed.seed),
        orphans=_orphans(body),
    )
    modes = body.get("modes", {})
    if not isinstance(modes, dict):
        raise ControlError("'modes' must be an object")
    fresh = Modes()
    fresh.update(modes, allow_seed=True)
    with org.store.lock:
        org.modes, org.seed, org.stats = fresh, params, Stats()
        org.limits.reset()  # like the modes, limits and faults return to their defaults (off)
        org.faults.clear()
        counts = seed_organization(org)
    return 200, {"seeded": counts, "modes": org.modes.to_json()}


def _orphans(body: dict[str, Any]) -> dict[str, float]:
    try:
        return orphan_shares(body.get("orphans", {}))
    except ValueError as exc:
        raise ControlError(str(exc)) from exc


def _reunify(org: Organization, body: dict[str, Any]) -> Answer:
    fraction = body.get("fraction", 0.01)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ControlError("'fraction' must be a number in (0, 1]")
    spread = body.get("spread_seconds", 0)
    if (
        isinstance(spread, bool)
        or not isinstance(spread, int | float)
        or not 0 <= spread <= MAX_ADVANCE_SECONDS
    ):
        raise ControlError(f"'spread_seconds' must be a number from 0 to {MAX_ADVANCE_SECONDS}")
    defer = body.get("defer_profiles", False)
    if not isinstance(defer, bool):
        raise ControlError("'defer_profiles' must be true or false")
    now = org.clock.now()
    counts = reunify(
        org,
        fraction=float(fraction),
        seed=_int(body, "seed", 1),
        defer_profiles=defer,
        spread_seconds=float(spread),
        now=now,
    )
    return 200, {"changes": counts, "at": format_datetime(now, Precision.MILLISECOND), "at_micros": now}


def _links(org: Organization, table: str, lookup: str | None, rows: str) -> Answer:
    if table not in ("contact", "lead"):
        raise ControlError("'table' must be contact or lead")
    if rows not in ("all", "wrong", "none"):
        raise ControlError("'rows' must be all, wrong or none")
    rel = lookup_for(org, table, lookup)
    partitioned = rel is not None and f"{rel.referencing_attribute}pid" in org.entity(table).attributes
    keep = {"all": OUTCOMES, "wrong": NOT_AS_EXPECTED, "none": ()}[rows]
    with org.store.lock:
        counts, listed = summarize(links(org, table, lookup), partitioned, keep)
    return 200, {
        "table": table,
        "lookup": rel.referencing_attribute if rel else None,
        "navigation_property": rel.navigation_property if rel else None,
        "summary": counts,
        "rows": listed,
    }
