"""Row data in SQLite: one table per Dataverse table, plus row versions, visibility and a clock.

SQLite keeps a million rows on disk with bounded memory and answers the product's queries (filters on
indexed columns, ordered pages) the way a database would. One connection serves every thread behind
one lock: the emulator's answers are then serialised, which is also what makes batches and change sets
atomic without more machinery.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .schema import Attribute, AttributeType, Entity
from .values import now_micros

VERSION = "_version"
VISIBLE_AT = "_visible_at"
WRITER = "_writer"

_SQL_TYPES = {
    AttributeType.UNIQUEIDENTIFIER: "TEXT",
    AttributeType.LOOKUP: "TEXT",
    AttributeType.STRING: "TEXT",
    AttributeType.MEMO: "TEXT",
    AttributeType.DATETIME: "INTEGER",
    AttributeType.INTEGER: "INTEGER",
    AttributeType.STATE: "INTEGER",
    AttributeType.BIGINT: "INTEGER",
    AttributeType.BOOLEAN: "INTEGER",
}


def quote(name: str) -> str:
    """Quote an identifier for SQLite (names come from the catalog, never from a request)."""
    return '"' + name.replace('"', '""') + '"'


class Clock:
    """The server's clock: the host clock plus an offset tests can move forward."""

    def __init__(self) -> None:
        self._offset = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """Server time in epoch microseconds."""
        return now_micros() + self._offset

    def advance(self, seconds: float) -> int:
        """Move server time forward (never back: Dataverse time only grows) and return it."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += int(seconds * 1_000_000)
        return self.now()


class Store:
    """SQLite-backed rows of every table in the catalog."""

    def __init__(self, path: str = ":memory:") -> None:
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute("PRAGMA temp_store=FILE")
        self._conn.execute("PRAGMA cache_size=-65536")
        self._depth = 0
        self._version = 0
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS _snapshots (id TEXT, seq INTEGER, key TEXT, PRIMARY KEY (id, seq))"
        )

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self._conn.close()

    def next_version(self) -> int:
        """A new row version, greater than every earlier one (like SQL Server's rowversion)."""
        self._version += 1
        return self._version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing writes; nests through savepoints (a change set inside a batch)."""
        with self.lock:
            name = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                raise
            else:
                self._conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    # -- schema ---------------------------------------------------------------------------------

    def create_table(self, entity: Entity) -> None:
        """Create the SQLite table for a Dataverse table, with the indexes the product's queries use."""
        columns = [
            f"{quote(a.logical_name)} {_SQL_TYPES[a.type]}"
            + (" PRIMARY KEY" if a.logical_name == entity.primary_id else "")
            + (" COLLATE NOCASE" if a.type in (AttributeType.STRING, AttributeType.MEMO) else "")
            for a in entity.attributes.values()
        ]
        columns += [
            f"{VERSION} INTEGER NOT NULL",
            f"{VISIBLE_AT} INTEGER NOT NULL DEFAULT 0",
            f"{WRITER} TEXT",
        ]
        with self.lock:
            self._conn.execute(f"DROP TABLE IF EXISTS {quote(entity.logical_name)}")
            self._conn.execute(f"CREATE TABLE {quote(entity.logical_name)} ({', '.join(columns)})")
            self.index(entity, "modifiedon", entity.primary_id)
            for attribute in entity.attributes.values():
                if attribute.type is AttributeType.LOOKUP:
                    self.index(entity, attribute.logical_name)

    def index(self, entity: Entity, *columns: str) -> None:
        """Add an index (idempotent)."""
        name = quote(f"ix_{entity.logical_name}_{'_'.join(columns)}")
        cols = ", ".join(quote(c) for c in columns)
        with self.lock:
            self._conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {quote(entity.logical_name)} ({cols})")

    def add_column(self, entity: Entity, attribute: Attribute) -> None:
        """Add a column to an existing table (a new lookup), indexed when it is a lookup."""
        collate = " COLLATE NOCASE" if attribute.type in (AttributeType.STRING, AttributeType.MEMO) else ""
        with self.lock:
            self._conn.execute(
                f"ALTER TABLE {quote(entity.logical_name)} ADD COLUMN "
                f"{quote(attribute.logical_name)} {_SQL_TYPES[attribute.type]}{collate}"
            )
            if attribute.type is AttributeType.LOOKUP:
                self.index(entity, attribute.logical_name)

    # -- rows -----------------------------------------------------------------------------------

    def insert_many(self, entity: Entity, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> int:
        """Insert rows given as mappings with exactly ``columns`` plus the internal ones."""
        names = [*columns, VERSION, VISIBLE_AT, WRITER]
        sql = (
            f"INSERT INTO {quote(entity.logical_name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        count = 0
        with self.transaction():

            def values() -> Iterator[list[Any]]:
                nonlocal count
                for row in rows:
                    count += 1
                    yield [row.get(n) for n in columns] + [
                        self.next_version(),
                        row.get(VISIBLE_AT, 0),
                        row.get(WRITER),
                    ]

            self._conn.executemany(sql, values())
        return count

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement under the lock (callers build SQL from catalog names only)."""
        with self.lock:
            return self._conn.execute(sql, params)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a query and return all rows."""
        with self.lock:
            return self._conn.execute(sql, params).fetchall()

    def get(self, entity: Entity, key: str) -> sqlite3.Row | None:
        """One row by primary key, regardless of visibility (callers apply it)."""
        rows = self.fetch(
            f"SELECT * FROM {quote(entity.logical_name)} WHERE {quote(entity.primary_id)} = ?", (key,)
        )
        return rows[0] if rows else None

    def insert(self, entity: Entity, values: Mapping[str, Any], *, writer: str, visible_at: int) -> None:
        """Insert one row; ``values`` names stored columns."""
        names = [*values, VERSION, VISIBLE_AT, WRITER]
        params = [*values.values(), self.next_version(), visible_at, writer]
        self.execute(
            f"INSERT INTO {quote(entity.logical_name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            params,
        )

    def update(
        self, entity: Entity, key: str, values: Mapping[str, Any], *, writer: str, visible_at: int
    ) -> None:
        """Update one row's columns and give it a new version."""
        assignments = [f"{quote(n)} = ?" for n in values] + [
            f"{VERSION} = ?",
            f"{VISIBLE_AT} = ?",
            f"{WRITER} = ?",
        ]
        params = [*values.values(), self.next_version(), visible_at, writer, key]
        self.execute(
            f"UPDATE {quote(entity.logical_name)} SET {', '.join(assignments)} "
            f"WHERE {quote(entity.primary_id)} = ?",
            params,
        )

    def delete(self, entity: Entity, key: str) -> bool:
        """Delete one row; tell whether it existed."""
        cursor = self.execute(
            f"DELETE FROM {quote(entity.logical_name)} WHERE {quote(entity.primary_id)} = ?", (key,)
        )
        return cursor.rowcount > 0

    def count(self, entity: Entity) -> int:
        """How many rows a table holds."""
        return int(self.fetch(f"SELECT COUNT(*) FROM {quote(entity.logical_name)}")[0][0])
