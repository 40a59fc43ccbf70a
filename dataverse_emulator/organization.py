"""One emulated organization: its catalog, rows, modes, clock, request counters, limits and faults.

Everything a handler needs hangs off an ``Organization``; ``reset`` rebuilds it from the seed
parameters so tests can start from a known state without restarting the server.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog
from .faults import Faults
from .limits import CONCURRENCY, EXECUTION_TIME, REQUESTS, Limiter
from .modes import Modes
from .request_tally import tally_rows
from .schema import MAPPING_RELATIONSHIP, Entity, Relationship
from .store import VISIBLE_AT, WRITER, ServerClock, Store

CID_USER = "ci-d"
CID_LOOKUP = "msdynci_lookupfield_customerprofile"
"""The user CI-D's unification writes as: its elastic-table writes lag for everyone else."""


def cid_relationship(table: str, navigation_property: str) -> Relationship:
    """The lookup CI-D's own backstamping creates on a source table (names per CI-D's docs)."""
    return Relationship(
        schema_name=f"msdynci_customerprofile_{table}",
        referenced_entity="msdynci_customerprofile",
        referenced_attribute="msdynci_customerprofileid",
        referencing_entity=table,
        referencing_attribute=CID_LOOKUP,
        navigation_property=navigation_property,
        cascade={k: "NoCascade" for k in ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare")},
    )


@dataclass
class SeedParams:
    """What ``reset`` seeds: row counts and the generator's seed."""

    contacts: int = 1000
    leads: int = 500
    seed: int = 1
    orphans: dict[str, float] = field(default_factory=dict)
    """Per source table, the share of its mapped rows deleted after unification (``generator.orphan``)."""


class Stats:
    """Counts of requests by kind and rows read and written, in total and per user.

    With limits on or faults set, also the 429s by limit, the injected faults by kind and the server
    time charged per user; those sections appear once they have counted something, so the answer of an
    emulator without them stays as it always was.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.rows_read: Counter[str] = Counter()
        self.rows_written: Counter[str] = Counter()
        self.per_user: dict[str, Counter[str]] = {}
        self.throttled: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.execution_seconds: dict[str, float] = {}
        self.write_headers: Counter[str] = Counter()

    def write_header(self, name: str, value: str) -> None:
        """Count one write that carried an optional business-logic header (``name: value``)."""
        with self._lock:
            self.write_headers[f"{name}: {value}"] += 1

    def request(self, kind: str, user: str | None, status: int | None, *, inner: bool) -> None:
        """Count one HTTP request.

        ``inner``: one request inside a ``$batch``; ``status`` ``None``: dropped without an answer.
        """
        with self._lock:
            if not inner:
                self.requests[kind] += 1
                if status is not None:
                    self.statuses[str(status)] += 1
            self.operations[kind] += 1
            if user is not None:
                self.per_user.setdefault(user, Counter())["inner" if inner else "requests"] += 1

    def read(self, table: str, rows: int, user: str) -> None:
        """Count rows returned to a reader."""
        tally_rows(read=rows)
        with self._lock:
            self.rows_read[table] += rows
            self.per_user.setdefault(user, Counter())["rows_read"] += rows

    def written(self, table: str, rows: int, user: str) -> None:
        """Count rows changed by a writer."""
        tally_rows(written=rows)
        with self._lock:
            self.rows_written[table] += rows
            self.per_user.setdefault(user, Counter())["rows_written"] += rows

    def throttle(self, limit: str, user: str) -> None:
        """Count one 429 of the service protection limits, by limit."""
        with self._lock:
            self.throttled[limit] += 1
            self.per_user.setdefault(user, Counter())[f"throttled_{limit}"] += 1

    def fault(self, label: str, user: str) -> None:
        """Count one injected fault (``500``, ``503``, ``429``, ``slow``, ``drop``)."""
        with self._lock:
            self.faults[label] += 1
            self.per_user.setdefault(user, Counter())["faults"] += 1

    def charge(self, user: str, seconds: float) -> None:
        """Add server time (unscaled seconds) charged to a user's execution-time limit."""
        with self._lock:
            self.execution_seconds[user] = self.execution_seconds.get(user, 0.0) + seconds

    def to_json(self) -> dict[str, Any]:
        """The counters as the control API answers them."""
        with self._lock:
            answer: dict[str, Any] = {
                "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()),
                "operations": dict(self.operations),
                "statuses": dict(self.statuses),
                "rows_read": dict(self.rows_read),
                "rows_written": dict(self.rows_written),
                "per_user": {u: dict(c) for u, c in self.per_user.items()},
            }
            if self.throttled or self.execution_seconds:
                answer["throttled"] = {k: self.throttled[k] for k in (REQUESTS, EXECUTION_TIME, CONCURRENCY)}
                answer["execution_seconds"] = {u: round(s, 6) for u, s in self.execution_seconds.items()}
            if self.faults:
                answer["faults"] = dict(self.faults)
            if self.write_headers:
                answer["write_headers"] = dict(self.write_headers)
            return answer


@dataclass
class Organization:
    """The emulated organization's whole state."""

    store: Store
    clock: ServerClock = field(default_factory=ServerClock)
    modes: Modes = field(default_factory=Modes)
    catalog: Catalog = field(default_factory=Catalog)
    stats: Stats = field(default_factory=Stats)
    seed: SeedParams = field(default_factory=SeedParams)
    organization_id: str = "2f5c6f0e-1d9b-4b8e-9a57-0c6b3e0d4a21"
    deferred: list[dict[str, Any]] = field(default_factory=list)
    limits: Limiter = field(default_factory=Limiter)
    faults: Faults = field(default_factory=Faults)

    def entity(self, logical_name: str) -> Entity:
        """A built-in table that must exist."""
        entity = self.catalog.entity(logical_name)
        if entity is None:
            raise KeyError(logical_name)
        return entity

    def visible_sql(self, entity: Entity, user: str, now: int) -> tuple[str, list[Any]]:
        """The SQL condition that hides other users' elastic writes during the read lag."""
        if not entity.elastic:
            return "1", []
        return f"({VISIBLE_AT} <= ? OR {WRITER} = ?)", [now, user]

    def visible_at(self, entity: Entity, now: int) -> int:
        """When a write made now becomes visible to other users."""
        if not entity.elastic:
            return 0
        return now + int(self.modes.elastic_read_lag_seconds * 1_000_000)

    def create_relationship(self, rel: Relationship, display_name: str) -> None:
        """Add a relationship and its lookup columns to the catalog and the store."""
        now = self.clock.now()
        delay = int(self.modes.metadata_delay_seconds * 1_000_000)
        with self.store.lock:
            for attribute in self.catalog.add_relationship(
                rel, display_name=display_name, visible_at=now + delay
            ):
                self.store.add_column(self.entity(rel.referencing_entity), attribute)

    def rebuild(self) -> None:
        """Recreate every table empty, with the built-in relationships."""
        with self.store.lock:
            self.catalog = Catalog()
            self.catalog.add_relationship(
                Relationship(
                    **{**MAPPING_RELATIONSHIP.__dict__, "cascade": dict(MAPPING_RELATIONSHIP.cascade)}
                ),
                display_name="Customer",
                visible_at=0,
            )
            if self.modes.cid_lookup == "present":
                for table in ("contact", "lead"):
                    self.catalog.add_relationship(
                        cid_relationship(table, self.modes.cid_lookup_navigation_property),
                        display_name="Customer Profile",
                        visible_at=0,
                    )
            for entity in self.catalog.entities.values():
                self.store.create_table(entity)
            mapping = self.entity("msdynci_alternatekey")
            self.store.index(mapping, "msdynci_alternatevalue")
            self.store.execute(  # the truth's join key: the source row id a mapping row names
                "CREATE INDEX IF NOT EXISTS ix_mapping_source ON msdynci_alternatekey "
                "(lower(trim(msdynci_alternatevalue, '{}')), msdynci_entityname)"
            )
            self.store.execute("DELETE FROM _snapshots")
            self.deferred.clear()
