"""Fixtures for the storage adapters: one Azurite per session, and each interface as both implementations.

``tables`` and ``queues`` are parametrised over the in-memory fake and the Azure adapter on Azurite, so
every test that uses them proves the two behave alike. Azurite starts only when an Azure variant runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from hydration.storage import AzureStateTables, AzureTaskQueue, MemoryStateTables, MemoryTaskQueue
from hydration.storage.queues import TaskQueue
from hydration.storage.tables import StateTables

IMPLEMENTATIONS = [pytest.param("memory"), pytest.param("azure", marks=pytest.mark.integration)]


def unique(prefix: str) -> str:
    """A fresh table or queue name, so tests sharing one Azurite never see each other's data."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


class ManualClock:
    """A monotonic clock that only moves when told; ``sleep`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TablesEnv:
    """A ``StateTables`` under test, a fresh table name, and a fast way to seed many rows."""

    kind: str
    tables: StateTables
    table: str
    bulk_insert: Callable[[str, str, list[str]], None]
    connection_string: str | None = None
    queries_sent: list[str] = field(default_factory=list)


@pytest.fixture(params=IMPLEMENTATIONS)
def tables_env(request: pytest.FixtureRequest) -> TablesEnv:
    table = unique("t")
    if request.param == "memory":
        memory = MemoryStateTables()

        def insert_memory(table: str, pk: str, row_keys: list[str]) -> None:
            for rk in row_keys:
                memory.insert(table, pk, rk, {"n": len(rk)})

        return TablesEnv("memory", memory, table, insert_memory)
    connection_string: str = request.getfixturevalue("azurite")
    service = TableServiceClient.from_connection_string(connection_string)

    def insert_azure(table: str, pk: str, row_keys: list[str]) -> None:
        client = service.create_table_if_not_exists(table)
        for start in range(0, len(row_keys), 100):
            chunk = row_keys[start : start + 100]
            client.submit_transaction(
                [("create", {"PartitionKey": pk, "RowKey": rk, "n": len(rk)}) for rk in chunk]
            )

    queries_sent: list[str] = []

    def record_queries(response: Any) -> None:
        request = response.http_request
        if request.method == "GET" and "filter=" in request.url:
            queries_sent.append(request.url)

    traced = TableServiceClient.from_connection_string(connection_string, raw_response_hook=record_queries)
    tables = AzureStateTables(service=traced)
    return TablesEnv("azure", tables, table, insert_azure, connection_string, queries_sent)


@pytest.fixture
def tables(tables_env: TablesEnv) -> StateTables:
    return tables_env.tables


@pytest.fixture
def table(tables_env: TablesEnv) -> str:
    return tables_env.table


@dataclass
class QueuesEnv:
    """Queues of one implementation, a way to let time pass, and access to the raw wire body."""

    kind: str
    make: Callable[[], TaskQueue]
    advance: Callable[[float], None]
    send_raw: Callable[[TaskQueue, str], None]
    sleep: Callable[[float], None]
    clock: Callable[[], float]


@pytest.fixture(params=IMPLEMENTATIONS)
def queues(request: pytest.FixtureRequest) -> QueuesEnv:
    if request.param == "memory":
        clock = ManualClock()

        def make_memory() -> TaskQueue:
            return MemoryTaskQueue(clock, name=unique("q-"))

        def send_raw_memory(queue: TaskQueue, raw: str) -> None:
            assert isinstance(queue, MemoryTaskQueue)
            queue.send_raw(raw)

        return QueuesEnv("memory", make_memory, clock.sleep, send_raw_memory, clock.sleep, clock)
    connection_string: str = request.getfixturevalue("azurite")

    def make_azure() -> TaskQueue:
        return AzureTaskQueue.from_connection_string(connection_string, unique("q-"))

    def send_raw_azure(queue: TaskQueue, raw: str) -> None:
        queue.approximate_count()  # creates the queue
        QueueClient.from_connection_string(connection_string, queue.name).send_message(raw)

    def advance_azure(seconds: float) -> None:
        time.sleep(seconds + 0.1)  # Azurite keeps times to the millisecond; a little margin

    return QueuesEnv("azure", make_azure, advance_azure, send_raw_azure, time.sleep, time.monotonic)
