"""The state store: runs, tasks, checkpoints and leases as entities in Azure Table Storage.

``StateTables`` is the interface the planner and worker use; ``AzureStateTables`` talks to Table Storage
(or Azurite) and ``MemoryStateTables`` is the in-memory fake for unit tests. Both validate and encode
through ``entities`` (the value convention is written there), so a value the fake accepts is one the
service accepts, and reads come back in the same shape.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from hydration.storage.entities import (
    INT32,
    Stored,
    decode_entity,
    encode_entity,
    plain_utc,
    row_order,
    validate_key,
    validate_table_name,
)
from hydration.storage.errors import ConflictError, StorageError, translate

PAGE_SIZE = 1000  # the service's largest page; the query iterator holds one page at a time
TRANSACTION_SIZE = 100  # the service's limit per transaction (Azurite answers garbage beyond it)


@dataclass(frozen=True)
class StoredEntity:
    """An entity's user properties and the ETag that a conditional ``replace`` or ``delete`` must quote."""

    entity: dict[str, Any]
    etag: str


class StateTables(Protocol):
    """Entities addressed by (table, partition key, row key), with ETag concurrency.

    Tables are created on first use. Every method raises ``StorageError`` subclasses only (plus
    ``ValueError``/``TypeError`` for values the store cannot hold, before anything is sent).
    """

    def get(self, table: str, pk: str, rk: str) -> StoredEntity | None:
        """The entity, or None when it does not exist."""
        ...

    def insert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create the entity and return its ETag; ``ConflictError`` if it already exists (a claim)."""
        ...

    def replace(self, table: str, pk: str, rk: str, entity: Mapping[str, Any], etag: str) -> str:
        """Replace the entity if it still has ``etag``; ``ConflictError`` if it changed or is gone."""
        ...

    def upsert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create or wholly replace the entity, unconditionally; returns the new ETag."""
        ...

    def delete(self, table: str, pk: str, rk: str, etag: str | None = None) -> None:
        """Delete the entity; a missing one is fine; with ``etag``, ``ConflictError`` if it changed."""
        ...

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, StoredEntity]]:
        """(row key, value) of a partition in row key order, fetched a page at a time.

        With ``after``, only the row keys after it: a key-ranged read, so a caller that stops early
        reads no more than it used.
        """
        ...

    def delete_partition(self, table: str, pk: str) -> int:
        """Delete every entity of a partition in transactions of at most 100; returns how many."""
        ...


# --- Azure Table Storage ---------------------------------------------------------------------------


class AzureStateTables:
    """``StateTables`` on Azure Table Storage or Azurite.

    Thread-safe: the SDK clients are, and the cache of created tables is guarded by a lock. The SDK's own
    retry policy handles brief blips (``retry_total`` in the factories); what remains is translated into
    ``StorageUnavailableError`` for the queue's retry to handle.
    """

    def __init__(self, *, service: TableServiceClient) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, *, retry_total: int = 3) -> AzureStateTables:
        """Local development and tests: Azurite's or an account's connection string."""
        service = TableServiceClient.from_connection_string(connection_string, retry_total=retry_total)
        return cls(service=service)

    @classmethod
    def from_endpoint(
        cls, endpoint: str, credential: TokenCredential, *, retry_total: int = 3
    ) -> AzureStateTables:
        """In Azure: the account's table endpoint and a managed identity (no shared keys)."""
        return cls(service=TableServiceClient(endpoint, credential=credential, retry_total=retry_total))

    def _table(self, table: str) -> TableClient:
        """The client of a table, creating the table the first time this process uses it."""
        validate_table_name(table)
        with self._lock:
            client = self._clients.get(table)
            if client is not None:
                return client
            try:
                client = self._service.create_table(table)
            except ResourceExistsError:
                client = self._service.get_table_client(table)
            except AzureError as error:
                raise translate(error, f"create table {table}") from error
            self._clients[table] = client
            return client

    def get(self, table: str, pk: str, rk: str) -> StoredEntity | None:
        """The entity, or None when it does not exist."""
        validate_key(pk, "PartitionKey")
        validate_key(rk, "RowKey")
        client = self._table(table)
        try:
            raw = client.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise translate(error, f"get from {table}") from error
        return _from_sdk(raw)

    def insert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create the entity and return its ETag; ``ConflictError`` if it already exists (a claim)."""
        body = _to_sdk(pk, rk, encode_entity(pk, rk, entity))
        client = self._table(table)
        try:
            return _etag(client.create_entity(body))
        except AzureError as error:
            raise translate(error, f"insert into {table}") from error

    def replace(self, table: str, pk: str, rk: str, entity: Mapping[str, Any], etag: str) -> str:
        """Replace the entity if it still has ``etag``; ``ConflictError`` if it changed or is gone."""
        body = _to_sdk(pk, rk, encode_entity(pk, rk, entity))
        client = self._table(table)
        try:
            metadata = client.update_entity(
                body, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError as error:
            raise ConflictError(f"replace in {table}: the entity is gone", status=404) from error
        except AzureError as error:
            raise translate(error, f"replace in {table}") from error
        return _etag(metadata)

    def upsert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create or wholly replace the entity, unconditionally; returns the new ETag."""
        body = _to_sdk(pk, rk, encode_entity(pk, rk, entity))
        client = self._table(table)
        try:
            return _etag(client.upsert_entity(body, mode=UpdateMode.REPLACE))
        except AzureError as error:
            raise translate(error, f"upsert into {table}") from error

    def delete(self, table: str, pk: str, rk: str, etag: str | None = None) -> None:
        """Delete the entity; a missing one is fine; with ``etag``, ``ConflictError`` if it changed."""
        validate_key(pk, "PartitionKey")
        validate_key(rk, "RowKey")
        client = self._table(table)
        try:
            if etag is None:
                client.delete_entity(pk, rk)
            else:
                client.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified)
        except AzureError as error:
            raise translate(error, f"delete from {table}") from error

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, StoredEntity]]:
        """(row key, value) of a partition in row key order, fetched a page at a time (after ``after``)."""
        validate_key(pk, "PartitionKey")
        if after is not None:
            validate_key(after, "RowKey")
        return self._query(self._table(table), table, pk, after)

    @staticmethod
    def _query(
        client: TableClient, table: str, pk: str, after: str | None
    ) -> Iterator[tuple[str, StoredEntity]]:
        condition, parameters = "PartitionKey eq @pk", {"pk": pk}
        if after is not None:
            condition, parameters = condition + " and RowKey gt @after", {"pk": pk, "after": after}
        try:
            pages = client.query_entities(condition, parameters=parameters, results_per_page=PAGE_SIZE)
            for raw in pages:
                yield str(raw["RowKey"]), _from_sdk(raw)
        except AzureError as error:
            raise translate(error, f"query {table}") from error

    def delete_partition(self, table: str, pk: str) -> int:
        """Delete every entity of a partition in transactions of at most 100; returns how many.

        Each round reads the first 100 row keys afresh and deletes them in one transaction, so deleting
        never races a continuation token. If a transaction fails because a row vanished meanwhile, that
        round falls back to single deletes (which tolerate missing rows).
        """
        validate_key(pk, "PartitionKey")
        client = self._table(table)
        deleted = 0
        try:
            while True:
                pages = client.query_entities(
                    "PartitionKey eq @pk",
                    parameters={"pk": pk},
                    select=["RowKey"],
                    results_per_page=TRANSACTION_SIZE,
                ).by_page()
                row_keys = [str(raw["RowKey"]) for raw in next(pages, [])]
                if not row_keys:
                    return deleted
                try:
                    client.submit_transaction(
                        [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in row_keys]
                    )
                except TableTransactionError as error:
                    if error.status_code != 404:
                        raise
                    for rk in row_keys:
                        client.delete_entity(pk, rk)
                deleted += len(row_keys)
        except AzureError as error:
            raise translate(error, f"delete partition of {table}") from error


def _to_sdk(pk: str, rk: str, stored: Stored) -> dict[str, Any]:
    body: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    for name, value in stored.items():
        if isinstance(value, int) and not isinstance(value, bool) and value not in INT32:
            body[name] = EntityProperty(value, EdmType.INT64)
        else:
            body[name] = value
    return body


def _from_sdk(raw: Mapping[str, Any]) -> StoredEntity:
    stored: dict[str, Any] = {}
    for name, value in raw.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        plain = value.value if isinstance(value, EntityProperty) else value
        stored[name] = plain_utc(plain) if isinstance(plain, datetime) else plain
    metadata = getattr(raw, "metadata", {})
    return StoredEntity(entity=decode_entity(stored), etag=str(metadata["etag"]))


def _etag(metadata: Mapping[str, Any]) -> str:
    etag = metadata.get("etag")
    if not etag:
        raise StorageError("the service answered a write without an ETag")
    return str(etag)


# --- in memory ----------------------------------------------------------------------------------


class MemoryStateTables:
    """``StateTables`` in a dict: the fake for unit tests, with the same validation and semantics.

    ETags change on every write; conditional writes, conflicts, ordering and paging behave as in the
    service. Thread-safe (one lock), so tests can race claims against each other.
    """

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, dict[str, tuple[Stored, str]]]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.RLock()

    def _partition(self, table: str, pk: str) -> dict[str, tuple[Stored, str]]:
        validate_table_name(table)
        validate_key(pk, "PartitionKey")
        return self._tables.setdefault(table, {}).setdefault(pk, {})

    def _next_etag(self) -> str:
        return f'W/"memory-{next(self._etags)}"'

    def get(self, table: str, pk: str, rk: str) -> StoredEntity | None:
        """The entity, or None when it does not exist."""
        validate_key(rk, "RowKey")
        with self._lock:
            row = self._partition(table, pk).get(rk)
        return None if row is None else StoredEntity(entity=decode_entity(row[0]), etag=row[1])

    def insert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create the entity and return its ETag; ``ConflictError`` if it already exists (a claim)."""
        stored = encode_entity(pk, rk, entity)
        with self._lock:
            partition = self._partition(table, pk)
            if rk in partition:
                raise ConflictError(f"insert into {table}: the entity already exists", status=409)
            return self._write(partition, rk, stored)

    def replace(self, table: str, pk: str, rk: str, entity: Mapping[str, Any], etag: str) -> str:
        """Replace the entity if it still has ``etag``; ``ConflictError`` if it changed or is gone."""
        stored = encode_entity(pk, rk, entity)
        with self._lock:
            partition = self._partition(table, pk)
            row = partition.get(rk)
            if row is None:
                raise ConflictError(f"replace in {table}: the entity is gone", status=404)
            if row[1] != etag:
                raise ConflictError(f"replace in {table}: the ETag no longer matches", status=412)
            return self._write(partition, rk, stored)

    def upsert(self, table: str, pk: str, rk: str, entity: Mapping[str, Any]) -> str:
        """Create or wholly replace the entity, unconditionally; returns the new ETag."""
        stored = encode_entity(pk, rk, entity)
        with self._lock:
            return self._write(self._partition(table, pk), rk, stored)

    def _write(self, partition: dict[str, tuple[Stored, str]], rk: str, stored: Stored) -> str:
        etag = self._next_etag()
        partition[rk] = (stored, etag)
        return etag

    def delete(self, table: str, pk: str, rk: str, etag: str | None = None) -> None:
        """Delete the entity; a missing one is fine; with ``etag``, ``ConflictError`` if it changed."""
        validate_key(rk, "RowKey")
        with self._lock:
            partition = self._partition(table, pk)
            row = partition.get(rk)
            if row is None:
                return
            if etag is not None and row[1] != etag:
                raise ConflictError(f"delete from {table}: the ETag no longer matches", status=412)
            del partition[rk]

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, StoredEntity]]:
        """(row key, value) of a partition in row key order, fetched a page at a time (after ``after``)."""
        with self._lock:
            self._partition(table, pk)
        return self._query(table, pk, None if after is None else row_order(after))

    def _query(self, table: str, pk: str, after: bytes | None) -> Iterator[tuple[str, StoredEntity]]:
        while True:
            with self._lock:
                partition = self._partition(table, pk)
                later = [k for k in partition if after is None or row_order(k) > after]
                keys = sorted(later, key=row_order)[:PAGE_SIZE]
                page = [(k, partition[k]) for k in keys]
            for rk, (stored, etag) in page:
                yield rk, StoredEntity(entity=decode_entity(stored), etag=etag)
            if len(page) < PAGE_SIZE:
                return
            after = row_order(page[-1][0])

    def delete_partition(self, table: str, pk: str) -> int:
        """Delete every entity of a partition; returns how many."""
        with self._lock:
            partition = self._partition(table, pk)
            count = len(partition)
            partition.clear()
            return count
