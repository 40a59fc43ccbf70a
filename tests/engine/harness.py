"""A hydration engine wired to the emulator (over HTTP) and Azurite, as the Functions host would run it.

``Harness.run`` starts a run with ``runs.start_run`` and pumps the Azurite queue into ``Worker.handle``
through ``QueueDriver`` (the host's dequeue-count and poison semantics), recording each outcome.
Crash points are injected by wrapping the real adapters, never by patching modules.

Without Azurite (``azurite=None``) the state and queues are the in-memory fakes, whose visibility
follows the harness's clock: with a ``FakeClock`` a throttled step re-enqueued for seconds is delivered
again at once, and the Dataverse client's backoff and the driver's polling sleep on the same clock, so a
throttling scenario runs deterministically in the time of its HTTP calls.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests

from dataverse_emulator.client import EmulatorClient
from hydration.checkpoints import Checkpoint
from hydration.clock import SYSTEM_CLOCK, Clock, FakeClock
from hydration.dataverse.auth import DevelopmentToken, TokenProvider
from hydration.dataverse.client import ClientSettings, DataverseClient
from hydration.dataverse.metadata import Metadata
from hydration.link_settings import LinkSettings
from hydration.passes import EngineSettings
from hydration.runs import start_run
from hydration.state import StateStore, TaskRecord
from hydration.storage.driver import Delivery, DrainStats, QueueDriver
from hydration.storage.queues import (
    AzureTaskQueue,
    MemoryTaskQueue,
    Received,
    TaskQueue,
    poison_queue_name,
)
from hydration.storage.tables import AzureStateTables, MemoryStateTables, StateTables
from hydration.telemetry import NO_METRICS, PassMetrics
from hydration.worker import Outcome, Worker

CONTACT_SOURCES = [("DataverseSales", "contact"), ("DataverseMarketing", "contact")]
LEAD_SOURCES = [("DataverseSales", "lead")]
TABLES = {"contact": CONTACT_SOURCES, "lead": LEAD_SOURCES}
SETTLE = timedelta(minutes=15)
SHORT_PAGES = 7
"""The emulator's ``short_pages`` seed every pass runs with: pages of varied sizes below the size asked
for while rows remain, as elastic tables serve them, so no test can pass on an engine that takes a
short page for the last."""


class CrashError(Exception):
    """An injected crash of the worker process at a chosen point."""


class CrashingState(StateStore):
    """The real state store, crashing once when a checkpoint that matches ``when`` is saved."""

    def __init__(self, inner: StateStore, when: Callable[[Checkpoint], bool] | None = None) -> None:
        super().__init__(inner.tables, prefix=inner.runs_table.removesuffix("runs"))
        self.when = when

    def save_checkpoint(self, checkpoint: Checkpoint, etag: str, *, plan: bool = False) -> str:
        if self.when is not None and self.when(checkpoint):
            self.when = None
            raise CrashError("crashed before saving the checkpoint")
        return super().save_checkpoint(checkpoint, etag, plan=plan)


class MeddlingState(StateStore):
    """The real state store, doing something else first, once, when a matching checkpoint is saved."""

    def __init__(
        self, inner: StateStore, when: Callable[[Checkpoint], bool], first: Callable[[], None]
    ) -> None:
        super().__init__(inner.tables, prefix=inner.runs_table.removesuffix("runs"))
        self.when: Callable[[Checkpoint], bool] | None = when
        self.first = first

    def save_checkpoint(self, checkpoint: Checkpoint, etag: str, *, plan: bool = False) -> str:
        if self.when is not None and self.when(checkpoint):
            self.when = None
            self.first()
        return super().save_checkpoint(checkpoint, etag, plan=plan)


@dataclass
class CrashingQueue:
    """The real queue, optionally crashing once around a send, or sending every message twice."""

    inner: TaskQueue
    crash_before: Callable[[str], bool] | None = None
    crash_after: Callable[[str], bool] | None = None
    duplicate: bool = False
    sent: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        if self.crash_before is not None and self.crash_before(text):
            self.crash_before = None
            raise CrashError("crashed before enqueuing")
        self.inner.send(text, delay_seconds=delay_seconds)
        self.sent.append(text)
        if self.duplicate:
            self.inner.send(text, delay_seconds=delay_seconds)
        if self.crash_after is not None and self.crash_after(text):
            self.crash_after = None
            raise CrashError("crashed after enqueuing")

    def receive(self, *, visibility_timeout: int) -> Received | None:
        return self.inner.receive(visibility_timeout=visibility_timeout)

    def delete(self, message: Received) -> None:
        self.inner.delete(message)

    def release(self, message: Received, *, delay_seconds: int = 0) -> None:
        self.inner.release(message, delay_seconds=delay_seconds)

    def approximate_count(self) -> int:
        return self.inner.approximate_count()

    def clear(self) -> None:
        self.inner.clear()


class Harness:
    """The engine against one emulator and Azurite (or in-memory fakes), with its own tables and queues."""

    def __init__(
        self,
        emulator: EmulatorClient,
        azurite: str | None,
        *,
        link: LinkSettings | None = None,
        client_settings: ClientSettings | None = None,
        session_factory: Callable[[], requests.Session] = requests.Session,
        write_users: Sequence[str] = (),
        full_pages: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        metrics: PassMetrics = NO_METRICS,
        **settings: Any,
    ) -> None:
        self.em = emulator
        self.clock = clock
        self.metrics = metrics
        self.queue_clock: Clock = clock if azurite is None else SYSTEM_CLOCK
        """What the queues' visibility follows, so what the driver waits on: Azurite's is real time."""
        emulator.modes(short_pages=None if full_pages else SHORT_PAGES)
        org = emulator.base_url
        self.client = DataverseClient(
            organization_url=org,
            tokens=TokenProvider(DevelopmentToken(org, "app"), org),
            settings=client_settings,
            clock=clock,
            session_factory=session_factory,
        )
        prefix = "t" + uuid.uuid4().hex[:12]
        self.state = StateStore(self._tables(azurite), prefix=prefix)
        queue_name = f"tasks-{uuid.uuid4().hex[:12]}"
        self.queue = CrashingQueue(self._queue(azurite, queue_name))
        self.poison = self._queue(azurite, poison_queue_name(queue_name))
        self.settings = EngineSettings(
            settle=SETTLE,
            allow_create_lookup=True,
            # one page per step by default, so a test can name the step at which to crash
            link=link or LinkSettings(page_size=1000, write_batch=200, step_pages=1),
            **settings,
        )
        self.metadata = Metadata(self.client, clock=FakeClock())
        self.write_clients = [
            DataverseClient(
                organization_url=org, tokens=TokenProvider(DevelopmentToken(org, user), org), clock=clock
            )
            for user in write_users
        ]
        self.outcomes: Counter[Outcome] = Counter()
        self.worker = self._worker(self.state)

    @staticmethod
    def _tables(azurite: str | None) -> StateTables:
        return MemoryStateTables() if azurite is None else AzureStateTables.from_connection_string(azurite)

    def _queue(self, azurite: str | None, name: str) -> TaskQueue:
        if azurite is None:
            return MemoryTaskQueue(self.queue_clock.monotonic, name=name)
        return AzureTaskQueue.from_connection_string(azurite, name)

    def _worker(self, state: StateStore) -> Worker:
        return Worker(
            client=self.client,
            state=state,
            queue=self.queue,
            settings=self.settings,
            metadata=self.metadata,
            clock=self.clock,
            write_clients=self.write_clients,
            metrics=self.metrics,
        )

    def crash_state(self, when: Callable[[Checkpoint], bool]) -> None:
        """Make the worker crash once, just before saving a checkpoint matching ``when``."""
        self.worker = self._worker(CrashingState(self.state, when))

    def driver(self) -> QueueDriver:
        """The local stand-in for the Functions queue trigger."""

        def handle(delivery: Delivery) -> None:
            self.outcomes[self.worker.handle(delivery.text)] += 1

        return QueueDriver(
            self.queue,
            self.poison,
            handle,
            max_dequeue_count=5,
            visibility_timeout=0,
            lease_seconds=120,
            clock=self.queue_clock,
            on_poison=lambda d, reason: self.worker.handle_poison(d.text, d.dequeue_count),
        )

    def settle(self) -> None:
        """Let the emulator's clock pass the settle period, so recent changes fall inside the window."""
        self.em.advance_clock(SETTLE.total_seconds() + 60)

    def start(
        self,
        *,
        tables: dict[str, list[tuple[str, str]]] | None = None,
        full: bool = False,
        plan: bool = False,
    ) -> str:
        """Start a run without processing it."""
        return start_run(
            self.state,
            self.queue,
            tables or TABLES,
            now=self.clock.now(),
            trigger="test",
            full=full,
            plan=plan,
        )

    def run(self, **kwargs: Any) -> tuple[str, dict[str, TaskRecord], DrainStats]:
        """Start a run and process its queue until empty."""
        run_id = self.start(**kwargs)
        stats = self.driver().drain(idle_timeout=10)
        return run_id, {t.table: t for t in self.state.tasks(run_id)}, stats

    def written(self) -> dict[str, int]:
        """Rows written per table, by the emulator's count."""
        return dict(self.em.stats()["rows_written"])

    def summary(self, table: str) -> dict[str, int]:
        """The emulator's truth for a table."""
        return dict(self.em.links(table, rows="none")["summary"])


def unavailable() -> requests.Response:
    """A 503 answer as Dataverse words it, for sessions that fake a failing transport."""
    response = requests.Response()
    response.status_code = 503
    response._content = b'{"error":{"code":"0x80040216","message":"Service unavailable"}}'
    return response
