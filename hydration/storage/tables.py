"""The state store: runs, tasks, checkpoints and leases as entities in Azure Table Storage.

``StateTables`` is the interface the planner and worker use; ``AzureStateTables`` talks to Table Storage
(or Azurite) and ``MemoryStateTables`` is the in-memory fake for unit tests. Both validate and encode
through the same functions below, so a value the fake accepts is one the service accepts, and reads
come back in the same shape.

Value convention (what goes in, what comes back):

- ``str`` (at most 64 KiB as UTF-16, the service's limit), ``bool``, ``float`` (finite), ``int`` (Int32
  on the wire when it fits, Int64 otherwise; beyond Int64 is refused), timezone-aware ``datetime``
  (stored in UTC, read back as a plain aware UTC ``datetime`` with microsecond precision).
- ``None`` is not stored: the property is omitted, and a missing property reads as absent, so callers
  use ``entity.get(name)``.
- ``dict`` and ``list`` are stored as compact JSON in a string property named ``<name>__json`` and read
  back under ``<name>``. Property names are ASCII identifiers (``[A-Za-z_][A-Za-z0-9_]*``), may not end
  in ``__json``, and may not be ``PartitionKey``, ``RowKey``, ``Timestamp`` or ``etag``.

Row keys are ordered as Table Storage orders them: by UTF-16 code units.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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

from hydration.storage.errors import ConflictError, InvalidKeyError, StorageError, translate

JSON_SUFFIX = "__json"
PAGE_SIZE = 1000  # the service's largest page; the query iterator holds one page at a time
TRANSACTION_SIZE = 100  # the service's limit per transaction (Azurite answers garbage beyond it)
MAX_STRING_UNITS = 32 * 1024  # 64 KiB of UTF-16
MAX_KEY_UNITS = 512  # 1 KiB of UTF-16
MAX_PROPERTIES = 252  # 255 minus PartitionKey, RowKey and Timestamp
MAX_ENTITY_BYTES = 1024 * 1024
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)
_MIN_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)  # Edm.DateTime starts here
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_RESERVED_NAMES = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag"})

Scalar = bool | int | float | str | datetime
Stored = dict[str, Scalar]
"""An entity's properties as stored: validated scalars, JSON already encoded; the fake keeps these."""


@dataclass(frozen=True)
class Versioned:
    """An entity's user properties and the ETag that a conditional ``replace`` or ``delete`` must quote."""

    entity: dict[str, Any]
    etag: str


class StateTables(Protocol):
    """Entities addressed by (table, partition key, row key), with ETag concurrency.

    Tables are created on first use. Every method raises ``StorageError`` subclasses only (plus
    ``ValueError``/``TypeError`` for values the store cannot hold, before anything is sent).
    """

    def get(self, table: str, pk: str, rk: str) -> Versioned | None:
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

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, Versioned]]:
        """(row key, value) of a partition in row key order, fetched a page at a time.

        With ``after``, only the row keys after it: a key-ranged read, so a caller that stops early
        reads no more than it used.
        """
        ...

    def delete_partition(self, table: str, pk: str) -> int:
        """Delete every entity of a partition in transactions of at most 100; returns how many."""
        ...


# --- validation and encoding, shared by both implementations ---------------------------------------


def validate_table_name(name: str) -> str:
    """The name if Table Storage accepts it (3-63 alphanumerics starting with a letter), else ValueError."""
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name) or name.lower() == "tables":
        raise ValueError(f"invalid table name {name!r}: 3-63 letters and digits, starting with a letter")
    return name


def validate_key(key: str, which: str = "key") -> str:
    """The key if Table Storage accepts it as a PartitionKey or RowKey, else ``InvalidKeyError``."""
    if not isinstance(key, str):
        raise TypeError(f"{which} must be a str, not {type(key).__name__}")
    if _FORBIDDEN_KEY_CHARS.search(key):
        raise InvalidKeyError(f"{which} contains a character Table Storage forbids (/ \\ # ? or control)")
    if _utf16_units(key) > MAX_KEY_UNITS:
        raise InvalidKeyError(f"{which} is longer than 1 KiB")
    return key


def encode_entity(pk: str, rk: str, entity: Mapping[str, Any]) -> Stored:
    """Validate the keys and properties and return the stored form (None dropped, JSON encoded)."""
    validate_key(pk, "PartitionKey")
    validate_key(rk, "RowKey")
    stored: Stored = {}
    for name, value in entity.items():
        _validate_property_name(name)
        if value is None:
            continue
        if isinstance(value, dict | list):
            stored[name + JSON_SUFFIX] = _checked_str(name, _to_json(name, value))
        else:
            stored[name] = _encode_scalar(name, value)
    if len(stored) > MAX_PROPERTIES:
        raise ValueError(f"entity has {len(stored)} properties; Table Storage allows {MAX_PROPERTIES}")
    if _entity_size(pk, rk, stored) > MAX_ENTITY_BYTES:
        raise ValueError("entity is larger than the 1 MiB Table Storage allows")
    return stored


def decode_entity(stored: Mapping[str, Any]) -> dict[str, Any]:
    """User properties from the stored form: ``<name>__json`` strings become ``<name>`` values."""
    entity: dict[str, Any] = {}
    for name, value in stored.items():
        if name.endswith(JSON_SUFFIX) and isinstance(value, str):
            try:
                entity[name[: -len(JSON_SUFFIX)]] = json.loads(value)
            except ValueError as error:
                raise StorageError(f"property {name} does not hold JSON") from error
        else:
            entity[name] = value
    return entity


def row_order(rk: str) -> bytes:
    """The sort key Table Storage uses for keys: UTF-16 code units, compared as unsigned numbers."""
    return rk.encode("utf-16-be", "surrogatepass")


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _validate_property_name(name: str) -> None:
    if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
        raise ValueError(f"invalid property name {name!r}: an ASCII identifier of at most 255 characters")
    if name in _RESERVED_NAMES or name.endswith(JSON_SUFFIX):
        raise ValueError(f"property name {name!r} is reserved")


def _to_json(name: str, value: dict[str, Any] | list[Any]) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"property {name!r} is not JSON-serialisable: {error}") from error


def _checked_str(name: str, value: str) -> str:
    if _utf16_units(value) > MAX_STRING_UNITS:
        raise ValueError(f"property {name!r} is longer than the 64 KiB Table Storage allows")
    return value


def _encode_scalar(name: str, value: object) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"property {name!r} does not fit in a 64-bit integer")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"property {name!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        return _checked_str(name, str(value))
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"property {name!r} is a naive datetime; give it a timezone")
        if value < _MIN_DATETIME:
            raise ValueError(f"property {name!r} is before 1601, the earliest Edm.DateTime")
        return _plain_utc(value)
    raise TypeError(f"property {name!r} has unsupported type {type(value).__name__}")


def _plain_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (the SDK returns a subclass that remembers the service's text)."""
    utc = value.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


def _entity_size(pk: str, rk: str, stored: Stored) -> int:
    """The service's documented size estimate of an entity, in bytes."""
    size = 4 + 2 * (_utf16_units(pk) + _utf16_units(rk)) + 4
    for name, value in stored.items():
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + 2 * _utf16_units(value)
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, int) and value in _INT32:
            size += 4
        else:
            size += 8
    return size


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

    def get(self, table: str, pk: str, rk: str) -> Versioned | None:
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

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, Versioned]]:
        """(row key, value) of a partition in row key order, fetched a page at a time (after ``after``)."""
        validate_key(pk, "PartitionKey")
        if after is not None:
            validate_key(after, "RowKey")
        return self._query(self._table(table), table, pk, after)

    @staticmethod
    def _query(
        client: TableClient, table: str, pk: str, after: str | None
    ) -> Iterator[tuple[str, Versioned]]:
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
        if isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
            body[name] = EntityProperty(value, EdmType.INT64)
        else:
            body[name] = value
    return body


def _from_sdk(raw: Mapping[str, Any]) -> Versioned:
    stored: dict[str, Any] = {}
    for name, value in raw.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        plain = value.value if isinstance(value, EntityProperty) else value
        stored[name] = _plain_utc(plain) if isinstance(plain, datetime) else plain
    metadata = getattr(raw, "metadata", {})
    return Versioned(entity=decode_entity(stored), etag=str(metadata["etag"]))


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

    def get(self, table: str, pk: str, rk: str) -> Versioned | None:
        """The entity, or None when it does not exist."""
        validate_key(rk, "RowKey")
        with self._lock:
            row = self._partition(table, pk).get(rk)
        return None if row is None else Versioned(entity=decode_entity(row[0]), etag=row[1])

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

    def query(self, table: str, pk: str, *, after: str | None = None) -> Iterator[tuple[str, Versioned]]:
        """(row key, value) of a partition in row key order, fetched a page at a time (after ``after``)."""
        with self._lock:
            self._partition(table, pk)
        return self._query(table, pk, None if after is None else row_order(after))

    def _query(self, table: str, pk: str, after: bytes | None) -> Iterator[tuple[str, Versioned]]:
        while True:
            with self._lock:
                partition = self._partition(table, pk)
                later = [k for k in partition if after is None or row_order(k) > after]
                keys = sorted(later, key=row_order)[:PAGE_SIZE]
                page = [(k, partition[k]) for k in keys]
            for rk, (stored, etag) in page:
                yield rk, Versioned(entity=decode_entity(stored), etag=etag)
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
