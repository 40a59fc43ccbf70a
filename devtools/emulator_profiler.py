"""Measuring the emulator's own work per request: requests sent through its WSGI app, timed by kind.

``time.process_time`` around a request through werkzeug's test client (no sockets, no server threads)
is the emulator's CPU plus the small share of building the request and reading the answer.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from werkzeug.test import Client

from dataverse_emulator import EmulatorServer
from dataverse_emulator.server import EmulatorApp
from dataverse_emulator.values import Precision, format_datetime
from hydration.dataverse.batch import Part, build, parse

API = "/api/data/v9.2/"
AUTH = {"Authorization": "Bearer hydration-app", "Accept": "application/json"}
PAGE = {"Prefer": "odata.maxpagesize=5000"}
_SAFE = "$,'()=/:@*"


@dataclass
class Kind:
    """The measurements of one request kind."""

    name: str
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        """Mean, median and worst CPU per request, CPU per row, and the rows a request carried."""
        rows = sum(self.rows)
        return {
            "kind": self.name,
            "requests": len(self.cpu),
            "cpu_ms_mean": 1000 * statistics.fmean(self.cpu),
            "cpu_ms_median": 1000 * statistics.median(self.cpu),
            "cpu_ms_max": 1000 * max(self.cpu),
            "wall_ms_mean": 1000 * statistics.fmean(self.wall),
            "rows_per_request": rows / len(self.cpu),
            "cpu_us_per_row": 1e6 * sum(self.cpu) / rows if rows else None,
            "statuses": sorted(self.statuses),
        }


def query(entity_set: str, options: dict[str, str]) -> str:
    """A relative URL with percent-encoded options, written as the product writes them."""
    return entity_set + "?" + "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in options.items())


def in_filter(name: str, values: Sequence[str]) -> str:
    """``Microsoft.Dynamics.CRM.In`` over string literals."""
    literals = ",".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{name}',PropertyValues=[{literals}])"


def moment(micros: int) -> str:
    """A bare UTC date-time literal with milliseconds, as the product sends it."""
    return format_datetime(micros, Precision.MILLISECOND)


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Send = Callable[[], tuple[int, int]]
"""One request: answers its HTTP status and the rows it read or wrote."""


class Profiler:
    """Sends requests to one emulator's WSGI app and keeps the measurements by kind."""

    def __init__(self, server: EmulatorServer) -> None:
        self.org = server.org
        self.app: EmulatorApp = server.app
        self.client = Client(self.app)
        self.kinds: dict[str, Kind] = {}
        self.rss_mb_after_requests = 0.0
        """The peak RSS once the request kinds ran, before the control calls (which sort whole tables)."""

    def measure(self, name: str, send: Send) -> None:
        """Run one request and record its CPU and wall time, status and rows."""
        kind = self.kinds.setdefault(name, Kind(name))
        wall, cpu = time.perf_counter(), time.process_time()
        status, rows = send()
        kind.cpu.append(time.process_time() - cpu)
        kind.wall.append(time.perf_counter() - wall)
        kind.rows.append(rows)
        kind.statuses.add(status)

    def page(self, url: str) -> tuple[int, list[dict[str, Any]]]:
        """GET one page of at most 5,000 rows."""
        response = self.client.get(API + url, headers={**AUTH, **PAGE})
        body = response.get_json(silent=True)
        return response.status_code, body.get("value", []) if isinstance(body, dict) else []

    def batch(self, parts: Sequence[Part]) -> tuple[int, int]:
        """Send a ``$batch``; answer its status (or a failed part's) and the rows of all parts."""
        body, content_type = build(parts, API)
        response = self.client.post(
            API + "$batch", data=body, headers={**AUTH, **PAGE, "Content-Type": content_type}
        )
        if response.status_code != 200:
            return response.status_code, 0
        rows = 0
        for result in parse(response.get_data(), response.headers["Content-Type"]):
            if result.status >= 400:
                return result.status, rows
            answer = result.json() if result.body else None
            rows += len(answer["value"]) if isinstance(answer, dict) and "value" in answer else 1
        return 200, rows

    def keys(self, table: str, key: str, count: int, rng: random.Random) -> list[str]:
        """``count`` keys of ``table`` at random rowids, read from the store (setup, not measured)."""
        store = self.org.store
        top = int(store.fetch(f"SELECT MAX(rowid) FROM {table}")[0][0] or 0)
        picks = sorted(rng.sample(range(1, top + 1), min(top, count)))
        found: list[str] = []
        for start in range(0, len(picks), 900):
            chunk = picks[start : start + 900]
            marks = ",".join("?" * len(chunk))
            found += [r[0] for r in store.fetch(f"SELECT {key} FROM {table} WHERE rowid IN ({marks})", chunk)]
        rng.shuffle(found)
        return found
