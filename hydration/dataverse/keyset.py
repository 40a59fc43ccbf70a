"""Key-set paging with the caller's own filter: pages go on until the server says nothing follows.

A pass reads its pages as ``… and <key> gt <last>`` ordered by key, so a row that changes while the pass
reads can never make the server skip another (see docs/engine.md). Whether another page follows is the
server's word alone: ``@odata.nextLink`` present means more rows remain. ``odata.maxpagesize`` is only
a maximum, and a server may serve fewer rows while more remain (Dataverse's elastic tables do), so a
short page is never taken to be the last.

``KeysetPaginator`` owns that rule, as singer-sdk's paginators do: ``advance`` takes a page's last key
and next link, ``has_more`` says whether to read on, ``cursor`` is where the next page starts. A page
whose last key is not past the cursor (no progress), or a page with nothing in it but a next link again
and again, is a ``PagingLoopError``, never an endless pass.
"""

from __future__ import annotations

from .paging import PagingLoopError

MAX_EMPTY_PAGES = 20
"""Empty pages with a next link in a row before the server is taken to be looping."""


class KeysetPaginator:
    """Where one key-set page sequence stands: the cursor, and whether the server has more."""

    def __init__(self, cursor: str | None = None) -> None:
        self.cursor = cursor
        """The last key read (``None`` before the first page): the next page starts after it."""
        self.has_more = True
        """Whether the server said more rows follow (its last answer had a next link)."""
        self.follow: str | None = None
        """A next link to follow as given: the last page was empty, so its keys say nothing new."""
        self._empty = 0
        self._previous_link: str | None = None
        self._ends: set[str] = set() if cursor is None else {cursor}
        """The last keys of the pages read: one met again means the server went round in a circle.
        Compared for equality only: the server's order of GUIDs is its own, not the client's."""

    def advance(self, last_key: str | None, next_link: str | None) -> None:
        """Record one page: its last key (``None`` when it was empty) and the server's next link."""
        self.has_more = next_link is not None
        self.follow = None
        if last_key is None:
            self._empty_page(next_link)
            return
        if last_key in self._ends:
            raise PagingLoopError(
                f"the server answered a page ending at key {last_key} again: no progress; "
                "stopping to avoid a loop"
            )
        self._ends.add(last_key)
        self.cursor, self._empty, self._previous_link = last_key, 0, None

    def _empty_page(self, next_link: str | None) -> None:
        if next_link is None:
            return
        self._empty += 1
        if next_link == self._previous_link or self._empty > MAX_EMPTY_PAGES:
            raise PagingLoopError(
                "the server keeps answering empty pages with a next link; stopping to avoid a loop"
            )
        self._previous_link = self.follow = next_link
