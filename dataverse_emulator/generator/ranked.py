"""Sorted rows kept on disk and drawn by position, so re-unification stays bounded in memory."""

from __future__ import annotations

import sqlite3
from bisect import bisect_right, insort
from collections.abc import Iterator, Sequence
from typing import Any, overload

from ..store import Store, quote


class _Ranked(Sequence[sqlite3.Row]):
    """The rows of a query in its order, by position, kept in a temporary SQLite table.

    Re-unification draws rows at random positions of sorted lists (every Dataverse mapping row, every
    profile, every unmapped contact); at a million rows those lists were most of its memory. The
    temporary table holds the list on disk, ``pos`` giving each row's position, so a draw is one
    indexed read. Positions can be removed (a merged profile, a contact that got a mapping row) and
    later positions close up as they did with ``list.pop``, so a seed draws the same rows as the lists
    did. Removed positions are kept in memory: they are the changes, a small part of the rows.
    """

    def __init__(
        self, store: Store, name: str, columns: Sequence[str], select: str, params: Sequence[Any] = ()
    ) -> None:
        self.store, self.name = store, quote(name)
        names = ", ".join(quote(c) for c in columns)
        store.execute(f"DROP TABLE IF EXISTS temp.{self.name}")
        store.execute(f"CREATE TEMP TABLE {self.name} (pos INTEGER PRIMARY KEY, {names})")
        # INSERT … SELECT … ORDER BY inserts in that order, so ``pos`` (the rowid) counts 1, 2, … along it.
        self.size = store.execute(f"INSERT INTO temp.{self.name} ({names}) {select}", params).rowcount
        self._removed: list[int] = []
        self._removed_set: set[int] = set()

    def drop(self) -> None:
        """Remove the temporary table."""
        self.store.execute(f"DROP TABLE IF EXISTS temp.{self.name}")

    def at(self, position: int) -> sqlite3.Row:
        """The row at ``position`` of the original order, removed or not."""
        return self.store.fetch(f"SELECT * FROM temp.{self.name} WHERE pos = ?", (position + 1,))[0]

    def removed(self, position: int) -> bool:
        """Whether the row at ``position`` of the original order has been removed."""
        return position in self._removed_set

    def remove(self, position: int) -> None:
        """Remove the row at ``position`` of the original order; later rows move up one place."""
        if position not in self._removed_set:
            insort(self._removed, position)
            self._removed_set.add(position)

    def position(self, index: int) -> int:
        """The original position of the ``index``-th remaining row.

        It is the least ``p`` with ``p = index + (removed positions <= p)``; iterating from ``index``
        climbs to it, and that least solution is never itself removed.
        """
        position = index
        while True:
            following = index + bisect_right(self._removed, position)
            if following == position:
                return position
            position = following

    def pop(self, index: int) -> sqlite3.Row:
        """Remove and return the ``index``-th remaining row, as ``list.pop(index)``."""
        position = self.position(index)
        row = self.at(position)
        self.remove(position)
        return row

    def __len__(self) -> int:
        return self.size - len(self._removed)

    @overload
    def __getitem__(self, index: int) -> sqlite3.Row: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[sqlite3.Row]: ...

    def __getitem__(self, index: int | slice) -> sqlite3.Row | Sequence[sqlite3.Row]:
        if isinstance(index, slice) or not 0 <= index < len(self):
            raise IndexError(index)
        return self.at(self.position(index))

    def __iter__(self) -> Iterator[sqlite3.Row]:
        """The remaining rows in order, in one query (``random.sample`` lists a small population)."""
        for row in self.store.iterate(f"SELECT * FROM temp.{self.name} ORDER BY pos"):
            if row["pos"] - 1 not in self._removed_set:
                yield row
