"""Injected faults: the failures a real organization shows now and then, on demand and reproducibly.

A client has to survive 500s and 503s, bursts of 429s, slow answers and connections that drop without
an answer, but a real organization produces them only when it wants to. Tests and benchmarks set
**rules** here (``PUT /_emulator/faults``); each top-level Web API request (never a control request, never
a part of a ``$batch``) is matched against them in order.

A rule names a ``kind`` (``error``, ``throttle``, ``slow``, ``drop``, ``answer``), which requests it matches
(``method``, a ``path`` regular expression searched in the path under ``/api/data/v9.2/``, ``user``)
and when it fires: with probability ``rate`` per matching request, or on the ``nth`` matching request
and the ``count - 1`` after it (``count`` alone: the next ``count`` requests). Whether a rate fires is
drawn from the seed, the rule's position and the match's number, so the same seed and the same
sequence of requests give the same faults. The first rule that fires applies; the others still count
the request as a match. ``after`` (errors and drops) runs the request first and then fails the answer:
the write happened but the client cannot know it. ``answer`` serves a hostile server's answer: the given
JSON body with status 200 in place of running the request (a next link to another host, rows of the
wrong shape). See docs/emulator-limits.md.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, fields
from typing import Any

from .errors import SERVER_ERROR, ApiError
from .limits import LIMITS, REQUESTS, LimitsConfig, throttle_error

KINDS = ("error", "throttle", "slow", "drop", "answer")
_KIND_FIELDS = {
    "error": {"status", "code", "message", "after"},
    "throttle": {"retry_after", "limit"},
    "slow": {"delay_seconds"},
    "drop": {"after"},
    "answer": {"body"},
}
_COMMON_FIELDS = {"kind", "method", "path", "user", "rate", "nth", "count"}
_MESSAGES = {
    500: "An unexpected error occurred.",
    503: "The service is temporarily unavailable. Please try again later.",
}


class FaultError(ValueError):
    """A fault rule the emulator refuses (answered 400 by the control API)."""


class DroppedConnectionError(ConnectionAbortedError):
    """A fault that ends the connection without an answer.

    Raised out of the WSGI application after the socket is shut: werkzeug takes a ``ConnectionError``
    for a dropped connection and writes nothing, so the client sees the connection end with no answer.
    """


@dataclass(frozen=True)
class FaultRule:
    """One validated rule (see the module docstring for the fields)."""

    kind: str
    method: str | None = None
    path: str | None = None
    user: str | None = None
    rate: float | None = None
    nth: int | None = None
    count: int | None = None
    status: int = 503
    code: str | None = None
    message: str | None = None
    after: bool = False
    retry_after: int = 1
    limit: str = REQUESTS
    delay_seconds: float = 0.0
    body: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The key the stats count this fault under: the status, ``slow`` or ``drop``."""
        return {"error": str(self.status), "throttle": "429"}.get(self.kind, self.kind)

    def matches(self, method: str, path: str, user: str) -> bool:
        """Whether a request is one this rule considers."""
        return (
            (self.method is None or self.method == method)
            and (self.user is None or self.user == user)
            and (self.path is None or re.search(self.path, path) is not None)
        )

    def fires(self, seed: int, index: int, match: int) -> bool:
        """Whether the ``match``-th matching request (from 1) gets this fault."""
        if self.rate is not None:
            return random.Random(f"{seed}:{index}:{match}").random() < self.rate
        first = self.nth or 1
        return first <= match < first + (self.count or 1)

    def error(self, config: LimitsConfig) -> ApiError:
        """The answer of an ``error`` or ``throttle`` rule, as Dataverse shapes it."""
        if self.kind == "throttle":
            return throttle_error(self.limit, config, self.retry_after)
        message = self.message or _MESSAGES.get(self.status, "The server could not answer the request.")
        return ApiError(self.status, self.code or SERVER_ERROR, message)

    def to_json(self) -> dict[str, Any]:
        """The rule as given, normalised: its kind's fields and the matching fields that are set."""
        keep = _COMMON_FIELDS | _KIND_FIELDS[self.kind]
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in keep and getattr(self, f.name) is not None
        }


def parse_rule(raw: Any) -> FaultRule:
    """A rule from its JSON object; ``FaultError`` names the first problem."""
    if not isinstance(raw, dict):
        raise FaultError("each rule must be a JSON object")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise FaultError(f"'kind' must be one of {', '.join(KINDS)}")
    allowed = _COMMON_FIELDS | _KIND_FIELDS[kind]
    for name in raw:
        if name not in allowed:
            raise FaultError(f"field {name!r} does not apply to a {kind} rule; allowed: {sorted(allowed)}")
    _check_matching(raw)
    _check_trigger(raw)
    _check_kind(kind, raw)
    return FaultRule(**raw)


def _check_matching(raw: dict[str, Any]) -> None:
    method = raw.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha() or not method.isupper()):
        raise FaultError("'method' must be an upper-case HTTP method such as POST")
    if raw.get("user") is not None and not isinstance(raw["user"], str):
        raise FaultError("'user' must be a string")
    path = raw.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise FaultError("'path' must be a regular expression string")
        try:
            re.compile(path)
        except re.error as exc:
            raise FaultError(f"'path' is not a valid regular expression: {exc}") from exc


def _check_trigger(raw: dict[str, Any]) -> None:
    rate, nth, count = raw.get("rate"), raw.get("nth"), raw.get("count")
    if rate is None and nth is None and count is None:
        raise FaultError("a rule needs 'rate', or 'nth' and/or 'count'")
    if rate is not None:
        if nth is not None or count is not None:
            raise FaultError("'rate' cannot be combined with 'nth' or 'count'")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultError("'rate' must be a number from 0 to 1")
    for name in ("nth", "count"):
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise FaultError(f"{name!r} must be an integer >= 1")


def _check_kind(kind: str, raw: dict[str, Any]) -> None:
    if "after" in raw and not isinstance(raw["after"], bool):
        raise FaultError("'after' must be true or false")
    if kind == "error":
        status = raw.get("status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise FaultError("'status' must be an integer from 500 to 599")
        for name in ("code", "message"):
            if raw.get(name) is not None and not isinstance(raw[name], str):
                raise FaultError(f"{name!r} must be a string")
    if kind == "throttle":
        retry_after = raw.get("retry_after", 1)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise FaultError("'retry_after' must be an integer >= 0 (whole seconds, sent as given)")
        if raw.get("limit", REQUESTS) not in LIMITS:
            raise FaultError(f"'limit' must be one of {', '.join(LIMITS)}")
    if kind == "answer" and not isinstance(raw.get("body"), dict):
        raise FaultError("'body' must be the JSON object to answer with")
    if kind == "slow":
        delay = raw.get("delay_seconds")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= 3600:
            raise FaultError("'delay_seconds' must be a number of server seconds in (0, 3600]")


class Faults:
    """The rules in force, their seed, and how many requests each matched and failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[FaultRule, ...] = ()
        self._seed = 0
        self._matched: list[int] = []
        self._fired: list[int] = []

    def replace(self, body: Any) -> None:
        """Set ``{"rules": [...], "seed": n}`` after validating all of it; nothing changes on error."""
        if not isinstance(body, dict):
            raise FaultError("the body must be a JSON object")
        unknown = sorted(set(body) - {"rules", "seed"})
        if unknown:
            raise FaultError(f"unknown field {unknown[0]!r}; known: rules, seed")
        rules, seed = body.get("rules", []), body.get("seed", 0)
        if not isinstance(rules, list):
            raise FaultError("'rules' must be a list")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FaultError("'seed' must be an integer")
        parsed = []
        for index, raw in enumerate(rules):
            try:
                parsed.append(parse_rule(raw))
            except FaultError as exc:
                raise FaultError(f"rules[{index}]: {exc}") from exc
        with self._lock:
            self._rules, self._seed = tuple(parsed), seed
            self._matched, self._fired = [0] * len(parsed), [0] * len(parsed)

    def clear(self) -> None:
        """No faults."""
        self.replace({})

    def pick(self, method: str, path: str, user: str) -> FaultRule | None:
        """The fault a top-level request gets, if any; counts the match for every rule it matches."""
        chosen: FaultRule | None = None
        with self._lock:
            for index, rule in enumerate(self._rules):
                if not rule.matches(method, path, user):
                    continue
                self._matched[index] += 1
                if chosen is None and rule.fires(self._seed, index, self._matched[index]):
                    chosen = rule
                    self._fired[index] += 1
        return chosen

    def to_json(self) -> dict[str, Any]:
        """The rules, the seed, and per rule the requests matched and failed so far."""
        with self._lock:
            return {
                "seed": self._seed,
                "rules": [rule.to_json() for rule in self._rules],
                "matched": list(self._matched),
                "fired": list(self._fired),
            }
