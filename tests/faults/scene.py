"""A small, fast scene for the fault matrix: the app's services against the emulator and Azurite.

Each case gets a freshly seeded emulator (80 contacts, 40 leads, short pages), its own state tables and
its own job queues on Azurite (or, where a case waits out queue delays, queues in memory on the same
fake clock as everything else; and where its subject is the Dataverse side alone, state tables in
memory too, which the storage contract tests hold to Azurite's semantics), and the app's ``Services``
built from its settings with a ``FakeClock``:
backoff, ``Retry-After`` waits and leases then cost no real time. Every case ends by checking every row
against the emulator's truth, and records what it injected and verified in the ``Ledger``.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dataverse_emulator.client import EmulatorClient
from dataverse_emulator.limits import LimitsConfig
from hydration.checkpoints import Checkpoint
from hydration.clock import FakeClock
from hydration.local_run import drain_run, local_driver
from hydration.planner import RunRequest
from hydration.service import Services
from hydration.settings import Settings
from hydration.state import StateStore
from hydration.status import report
from hydration.statuses import SETTLED
from hydration.storage.driver import QueueDriver
from hydration.storage.queues import AzureTaskQueue, MemoryTaskQueue, TaskQueue, poison_queue_name
from hydration.storage.tables import MemoryStateTables
from tests.app.conftest import manifest
from tests.engine.harness import MeddlingState

CONTACTS, LEADS, SEED = 80, 40, 7
TABLES = ("contact", "lead")
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults.json"


@dataclass
class CaseRecord:
    """What one case of the matrix did."""

    case: str
    faults_injected: int = 0
    rows_verified: int = 0
    rows_lost: int = 0


@dataclass
class Ledger:
    """The matrix's figures, written as JSON when the session ends (the README quotes them)."""

    cases: list[CaseRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Totals and the cases, for the artifact."""
        cases = self.cases
        return {
            "cases_run": len(cases),
            "faults_injected": sum(c.faults_injected for c in cases),
            "rows_verified": sum(c.rows_verified for c in cases),
            "rows_lost": sum(c.rows_lost for c in cases),
            "cases": [vars(c) for c in sorted(cases, key=lambda c: c.case)],
        }

    def write(self) -> Path | None:
        """Write the artifact (one file per xdist worker, as workers share nothing)."""
        if not self.cases:
            return None
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        path = ARTIFACT if worker is None else ARTIFACT.with_name(f"faults.{worker}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
        return path


class Scene:
    """One case: the emulator, the app's services on a fake clock, and what the case recorded."""

    def __init__(
        self,
        emulator: EmulatorClient,
        azurite: str,
        record: CaseRecord,
        *,
        page_size: int = 20,
        step_pages: int = 2,
        memory_queues: bool = False,
        memory_state: bool = False,
        env: dict[str, str] | None = None,
        client_timeout: float | None = None,
        rows: tuple[int, int] = (CONTACTS, LEADS),
    ) -> None:
        self.emulator = emulator
        self.azurite = azurite
        self.record = record
        self.clock = FakeClock(start=datetime.now(UTC))
        self.memory_queues = memory_queues
        emulator.reset(contacts=rows[0], leads=rows[1], seed=SEED, modes={"short_pages": 7})
        emulator.advance_clock(16 * 60)
        self.env = {
            "DATAVERSE_URL": emulator.base_url,
            "HYDRATION_STORAGE": azurite,
            "HYDRATION_MANIFEST": json.dumps(manifest(emulator.base_url)),
            "HYDRATION_TABLE_PREFIX": "f" + uuid.uuid4().hex[:12],
            "HYDRATION_ALLOW_CREATE_LOOKUP": "true",
            "HYDRATION_PAGE_SIZE": str(page_size),
            "HYDRATION_LEASE_MINUTES": "5",
            **(env or {}),
        }
        settings = Settings.from_env(self.env)
        settings = replace(settings, link=replace(settings.link, step_pages=step_pages))
        if client_timeout is not None:
            settings = replace(settings, client=replace(settings.client, timeout=client_timeout))
        self.settings = settings
        queue_name = "tasks-" + uuid.uuid4().hex[:12]
        if memory_queues:
            self.queue: TaskQueue = MemoryTaskQueue(self.clock.monotonic, name=queue_name)
            self.poison: TaskQueue = MemoryTaskQueue(self.clock.monotonic, name=poison_queue_name(queue_name))
        else:
            self.queue = AzureTaskQueue.from_connection_string(azurite, queue_name)
            self.poison = AzureTaskQueue.from_connection_string(azurite, poison_queue_name(queue_name))
        self.state: StateStore | None = (
            StateStore(MemoryStateTables(), prefix=self.env["HYDRATION_TABLE_PREFIX"])
            if memory_state
            else None
        )
        """With ``memory_state``, the state tables every host of the scene shares, in memory."""
        self.svc = self.host()

    def host(self, **changes: Any) -> Services:
        """The app's services as one Functions instance builds them (another call: another instance)."""
        built = Services.from_settings(self.settings, clock=self.clock)
        shared: dict[str, Any] = {"queue": self.queue, "poison": self.poison}
        if self.state is not None:
            shared["state"] = self.state
        return replace(built, **{**shared, **changes})

    def hooked(self, when: Callable[[Checkpoint], bool], first: Callable[[], None]) -> MeddlingState:
        """The scene's state store, doing ``first`` once before a checkpoint matching ``when`` is saved."""
        return MeddlingState(self.svc.state, when, first)

    # -- runs -------------------------------------------------------------------------------

    def start(self, svc: Services | None = None, **request: Any) -> str:
        """Start a run as a trigger would; its id."""
        return (svc or self.svc).planner().start(RunRequest(trigger="test", **request)).run_id

    def driver(self, svc: Services | None = None, *, lease_seconds: int = 60) -> QueueDriver:
        """The local stand-in for the queue trigger, retrying a failed message at once."""
        return local_driver(svc or self.svc, visibility_timeout=0, lease_seconds=lease_seconds)

    def drain(self, run_id: str, svc: Services | None = None) -> dict[str, Any]:
        """Process the queue until the run is final or held; its status view."""
        svc = svc or self.svc
        if not self.memory_queues:
            return drain_run(svc, run_id, out=io.StringIO(), driver=self.driver(svc))
        return self._drain_in_memory(svc, run_id)

    def _drain_in_memory(self, svc: Services, run_id: str) -> dict[str, Any]:
        """Like ``drain_run``, but an idle queue moves the fake clock on to its delayed messages."""
        driver, idle = self.driver(svc), 1.0
        for _ in range(10_000):
            view = self.view(run_id, svc)
            if view["status"] in SETTLED:
                return view
            if driver.step() is None:
                self.clock.advance(idle)
                idle = min(idle * 2, 24 * 3600)
            else:
                idle = 1.0
        raise AssertionError(f"run {run_id} never ended")

    def run(self, svc: Services | None = None, **request: Any) -> dict[str, Any]:
        """Start a run and drain it."""
        return self.drain(self.start(svc, **request), svc)

    def view(self, run_id: str, svc: Services | None = None) -> dict[str, Any]:
        """The run's status view (``GET /api/status?run=…``)."""
        svc = svc or self.svc
        return dict(report(svc.state, now=svc.clock.now(), run_id=run_id)["runs"][0])

    def tables(self, view: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The view's tables by name."""
        return {t["table"]: t for t in view["tables"]}

    def pass_lease(self) -> None:
        """Let the lease time (5 minutes) pass on the host's clock."""
        self.clock.advance(timedelta(minutes=5, seconds=1).total_seconds())

    # -- faults -----------------------------------------------------------------------------

    def inject(self, rules: list[dict[str, Any]], *, seed: int = 0) -> None:
        """Set the emulator's fault rules (those fired so far are counted first)."""
        self.clear_faults()
        self.emulator.faults(rules, seed=seed)

    def clear_faults(self) -> int:
        """Remove the fault rules; the number that fired since they were set, counted into the record."""
        fired = sum(self.emulator.faults()["fired"])
        self.emulator.clear_faults()
        self.record.faults_injected += fired
        return fired

    def count(self, faults: int) -> None:
        """Count faults the case injected itself (a crash, a duplicate, a stray message)."""
        self.record.faults_injected += faults

    # -- the truth --------------------------------------------------------------------------

    def verify(self, *tables: str) -> None:
        """Every row of every table holds exactly the link the mapping asks for; recorded."""
        for table in tables or TABLES:
            truth = self.emulator.links(table, rows="wrong")
            summary = truth["summary"]
            lost = summary["rows"] - summary["correct"]
            self.record.rows_verified += summary["rows"]
            self.record.rows_lost += lost
            assert truth["rows"] == [], (table, summary, truth["rows"][:3])
            assert lost == 0, (table, summary)

    def untouched(self) -> None:
        """No row holds a wrong or stale link (links may still be missing): nothing was corrupted."""
        for table in TABLES:
            summary = self.emulator.links(table, rows="none")["summary"]
            assert (summary["wrong"], summary["stale"], summary["partition_mismatch"]) == (0, 0, 0), summary


def scenes(
    emulator: EmulatorClient, azurite: str, ledger: Ledger, case: str
) -> Iterator[Callable[..., Scene]]:
    """A factory of scenes for one case, recording into the ledger and leaving no faults behind."""
    record = CaseRecord(case)

    def make(**options: Any) -> Scene:
        return Scene(emulator, azurite, record, **options)

    try:
        yield make
    finally:
        emulator.clear_faults()
        emulator.limits(**LimitsConfig().to_json())
        ledger.cases.append(record)
