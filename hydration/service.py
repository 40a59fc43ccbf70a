"""The app's objects built from its settings: storage adapters, Dataverse clients, planner and worker.

Built on first use inside a function call and kept for the process (the worker keeps its lookup and
table facts, its write pool and its learned parallelism between messages). The cache is keyed by the
settings the app reads, so a changed environment (a test, a redeployed setting) builds anew.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential

from .azure_monitor import AZURE_MONITOR, CONNECTION_STRING
from .clock import SYSTEM_CLOCK, Clock
from .dataverse.auth import token_provider
from .dataverse.client import DataverseClient
from .dataverse.metadata import Metadata
from .passes import EngineSettings
from .planner import Planner
from .settings import POISON_QUEUE_NAME, QUEUE_NAME, STORAGE, Settings, StorageSettings
from .state import StateStore
from .storage.queues import AzureTaskQueue, TaskQueue
from .storage.tables import AzureStateTables, StateTables
from .telemetry import NO_METRICS, PassMetrics
from .worker import Worker


def _storage_credential(storage: StorageSettings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if storage.client_id:
        return ManagedIdentityCredential(client_id=storage.client_id)
    return DefaultAzureCredential()


def storage_adapters(storage: StorageSettings) -> tuple[StateTables, TaskQueue, TaskQueue]:
    """The state tables, the job queue and its poison queue for the configured account."""
    if storage.connection_string is not None:
        connection = storage.connection_string
        return (
            AzureStateTables.from_connection_string(connection),
            AzureTaskQueue.from_connection_string(connection, QUEUE_NAME),
            AzureTaskQueue.from_connection_string(connection, POISON_QUEUE_NAME),
        )
    assert storage.queue_uri is not None
    assert storage.table_uri is not None
    credential = _storage_credential(storage)
    return (
        AzureStateTables.from_endpoint(storage.table_uri, credential),
        AzureTaskQueue.from_endpoint(storage.queue_uri, QUEUE_NAME, credential),
        AzureTaskQueue.from_endpoint(storage.queue_uri, POISON_QUEUE_NAME, credential),
    )


def dataverse_clients(
    settings: Settings, clock: Clock = SYSTEM_CLOCK
) -> tuple[DataverseClient, list[DataverseClient]]:
    """The main client and one per further application user (the credential pool)."""

    def client(user: str | None, client_id: str | None) -> DataverseClient:
        tokens = token_provider(
            settings.organization_url,
            development_user=user,
            managed_identity_client_id=client_id,
            clock=clock,
        )
        return DataverseClient(
            organization_url=settings.organization_url, tokens=tokens, settings=settings.client, clock=clock
        )

    main = client(settings.development_user, settings.client_id)
    extra = [
        client(f"{settings.development_user}-{i}" if settings.development_user else None, cid)
        for i, cid in enumerate(settings.extra_client_ids, start=2)
    ]
    return main, extra


@dataclass
class Services:
    """Everything a trigger needs, for one organization and one storage account."""

    settings: Settings
    state: StateStore
    queue: TaskQueue
    poison: TaskQueue
    client: DataverseClient
    write_clients: list[DataverseClient] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK
    """The one clock of the process: the client, the write pool, the worker and the planner read it."""
    metrics: PassMetrics = NO_METRICS
    """Where the worker reports rows, throttling and task ends (Azure Monitor's when configured)."""

    def __post_init__(self) -> None:
        self.metadata = Metadata(self.client)
        self._worker: Worker | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, metrics: PassMetrics = NO_METRICS
    ) -> Services:
        """Real adapters for the settings (Azure Storage or Azurite, the organization or the emulator)."""
        tables, queue, poison = storage_adapters(settings.storage)
        client, extra = dataverse_clients(settings, clock)
        state = StateStore(tables, prefix=settings.table_prefix)
        return cls(
            settings=settings,
            state=state,
            queue=queue,
            poison=poison,
            client=client,
            write_clients=extra,
            clock=clock,
            metrics=metrics,
        )

    def engine_settings(self) -> EngineSettings:
        """The worker's part of the settings."""
        s = self.settings
        return EngineSettings(
            settle=s.settle,
            full_every=s.full_every,
            lease_ttl=s.lease_ttl,
            lookup=s.lookup,
            allow_create_lookup=s.allow_create_lookup,
            link=s.link,
            max_throttle_delay=s.max_throttle_delay.total_seconds(),
            max_throttled_requeues=s.max_throttled_requeues,
            relink=s.relink,
        )

    def worker(self) -> Worker:
        """The process's worker (one, so its caches and learned parallelism carry across messages)."""
        with self._lock:
            if self._worker is None:
                self._worker = Worker(
                    client=self.client,
                    state=self.state,
                    queue=self.queue,
                    settings=self.engine_settings(),
                    metadata=self.metadata,
                    clock=self.clock,
                    write_clients=self.write_clients,
                    metrics=self.metrics,
                )
            return self._worker

    def planner(self) -> Planner:
        """A planner over the same adapters."""
        return Planner(
            settings=self.settings,
            client=self.client,
            state=self.state,
            queue=self.queue,
            metadata=self.metadata,
            clock=self.clock.now,
        )


_cache: dict[tuple[tuple[str, str], ...], Services] = {}
_cache_lock = threading.Lock()


def _relevant(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    from .settings import NAMES

    read = NAMES | {CONNECTION_STRING}
    return tuple(sorted((k, v) for k, v in env.items() if k in read or k.startswith(STORAGE)))


def services(env: Mapping[str, str] | None = None) -> Services:
    """The process's services for the environment (``SettingsError`` when the settings are invalid).

    Application Insights is configured here, once per process, when the environment names it.
    """
    env = os.environ if env is None else env
    key = _relevant(env)
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = Services.from_settings(Settings.from_env(env), metrics=AZURE_MONITOR.metrics(env))
            _cache.clear()  # one configuration per process; an old one is never used again
            _cache[key] = found
        return found
