"""Row data in SQLite: one table per Dataverse table, plus row versions, visibility and a clock.

SQLite keeps a million rows on disk with bounded memory and answers the product's queries (filters on
indexed columns, ordered pages) the way a database would. One connection serves every thread behind
one lock: the emulator's answers are then serialised, which is also what makes batches and change sets
atomic without more machinery.

Memory stays bounded at scale because nothing here holds a whole table in Python: bulk inserts stream
from iterators, ``iterate`` hands out a large answer in slices, and SQLite's own page cache is capped
(``cache_size``, 64 MiB), spilling to the database file and to temporary files beyond that. The
indexes each serve a query the product sends at scale (see ``create_table``, ``add_column`` and
docs/emulator-scale.md for the measurements behind them).
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
CACHE_KIB = 65_536
"""SQLite's page cache: enough for the hot index pages of a million-row organization."""
BULK_CACHE_KIB = 16_384
"""The page cache while a bulk load appends rows and builds indexes (see ``deferred_indexes``)."""

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


class ServerClock:
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
        self._conn.execute(f"PRAGMA cache_size={-CACHE_KIB}")
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

    @property
    def last_version(self) -> int:
        """The newest row version handed out: a row with a greater one was written after this moment."""
        return self._version

    def reserve_versions(self, count: int) -> int:
        """Hand out ``count`` consecutive new versions at once and return the first.

        For a bulk load that writes rows before it knows which versions they get (see
        ``generator.seed_organization``): it stores provisional numbers and shifts them afterwards.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        first = self._version + 1
        self._version += count
        return first

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
        """Create the SQLite table for a Dataverse table, with the indexes the product's queries use.

        The primary key is a unique index rather than a ``PRIMARY KEY`` constraint: the two answer and
        refuse duplicates alike, but only an index can be dropped for a bulk load and built again by
        sorting (``deferred_indexes``): a million rows with random GUID keys loaded in 18 s with the key
        index kept, in 10 s with it built afterwards.
        """
        columns = [
            f"{quote(a.logical_name)} {_SQL_TYPES[a.type]}"
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
            self.index(entity, entity.primary_id, unique=True, name=f"ix_{entity.logical_name}_key")
            self.index(entity, "modifiedon", entity.primary_id)
            for attribute in entity.attributes.values():
                if attribute.type is AttributeType.LOOKUP:
                    self._lookup_indexes(entity, attribute.logical_name)

    def index(
        self,
        entity: Entity,
        *columns: str,
        unique: bool = False,
        where: str | None = None,
        name: str | None = None,
    ) -> None:
        """Add an index (idempotent); ``where`` makes it a partial index over the rows it holds for."""
        name = quote(name or f"ix_{entity.logical_name}_{'_'.join(columns)}")
        cols = ", ".join(quote(c) for c in columns)
        condition = f" WHERE {where}" if where else ""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        with self.lock:
            self._conn.execute(
                f"CREATE {kind} IF NOT EXISTS {name} ON {quote(entity.logical_name)} ({cols}){condition}"
            )

    def _lookup_indexes(self, entity: Entity, lookup: str) -> None:
        """Index a lookup both ways the product reads it.

        By value (``_x_value eq <id>``, and the re-unification's members of a profile); and the keys of
        the rows where it is set, in key order: the reconcile pages through ``_x_value ne null and
        <key> gt <last>`` ordered by key, which without this partial index walks every row in key order,
        linked or not (a full scan per page while few rows are linked). Elastic tables (CI-D's, whose
        lookup is always set) are never read that way and skip it.
        """
        self.index(entity, lookup)
        if entity.elastic:
            return
        self.index(
            entity,
            entity.primary_id,
            where=f"{quote(lookup)} IS NOT NULL",
            name=f"ix_{entity.logical_name}_{lookup}_set",
        )

    def add_column(self, entity: Entity, attribute: Attribute) -> None:
        """Add a column to an existing table (a new lookup), indexed when it is a lookup."""
        collate = " COLLATE NOCASE" if attribute.type in (AttributeType.STRING, AttributeType.MEMO) else ""
        with self.lock:
            self._conn.execute(
                f"ALTER TABLE {quote(entity.logical_name)} ADD COLUMN "
                f"{quote(attribute.logical_name)} {_SQL_TYPES[attribute.type]}{collate}"
            )
            if attribute.type is AttributeType.LOOKUP:
                self._lookup_indexes(entity, attribute.logical_name)

    @contextmanager
    def deferred_indexes(self, *entities: Entity) -> Iterator[None]:
        """Drop the tables' secondary indexes for a bulk load and build them again at the end.

        Building an index from the loaded rows sorts once; keeping it during the load inserts every
        row into it at a random place, which at a million rows costs several times as much time and
        churns the page cache. The key's unique index goes too, so a duplicate key fails the load when
        the index is built again. Use inside a transaction, so a failed load leaves the indexes as they
        were.

        Meanwhile the page cache is cut to ``BULK_CACHE_KIB``: appending rows needs little of it, and
        SQLite's sorter takes as much memory again as the cache while it builds an index; at full size
        the peak of seeding a million contacts was 187 MB instead of 80.
        """
        with self.lock:
            names = [e.logical_name for e in entities]
            marks = ", ".join("?" for _ in names)
            indexes = self._conn.execute(
                "SELECT name, sql FROM sqlite_master "
                f"WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({marks}) ORDER BY name",
                names,
            ).fetchall()
            cache = int(self._conn.execute("PRAGMA cache_size").fetchone()[0])
            self._conn.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
            try:
                for index in indexes:
                    self._conn.execute(f"DROP INDEX {quote(index['name'])}")
                yield
                for index in indexes:
                    self._conn.execute(index["sql"])
            finally:
                self._conn.execute(f"PRAGMA cache_size = {cache}")

    # -- rows -----------------------------------------------------------------------------------

    def insert_many(
        self,
        entity: Entity,
        rows: Iterable[Mapping[str, Any]],
        columns: Sequence[str],
        *,
        versions: Iterator[int] | None = None,
    ) -> int:
        """Insert rows given as mappings with exactly ``columns`` plus the internal ones.

        Rows are consumed one at a time (``executemany`` over a generator), so a generator of a million
        rows is never held in memory. Each row gets a new version unless ``versions`` supplies them
        (provisional numbers of a bulk load, see ``reserve_versions``).
        """
        names = [*columns, VERSION, VISIBLE_AT, WRITER]
        sql = (
            f"INSERT INTO {quote(entity.logical_name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        count = 0
        version = self.next_version if versions is None else versions.__next__
        with self.transaction():

            def values() -> Iterator[list[Any]]:
                nonlocal count
                for row in rows:
                    count += 1
                    yield [row.get(n) for n in columns] + [version(), row.get(VISIBLE_AT, 0), row.get(WRITER)]

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

    def iterate(self, sql: str, params: Sequence[Any] = (), *, size: int = 2000) -> Iterator[sqlite3.Row]:
        """Run a query and yield its rows a slice at a time, for answers too large to hold at once.

        The lock is held until the iterator is exhausted or closed, so consume it promptly and in the
        thread that started it (as ``truth.links`` under the control API's lock does).
        """
        with self.lock:
            cursor = self._conn.execute(sql, params)
            try:
                while rows := cursor.fetchmany(size):
                    yield from rows
            finally:
                cursor.close()

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
