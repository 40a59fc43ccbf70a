"""Following ``@odata.nextLink``: exactly as given, only to the organization, never in a loop."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .errors import FatalError, UnsafeLinkError


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, lowercased, with the default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


class PagingLoopError(FatalError):
    """The server returned the same next link twice in a row."""


class Paginator:
    """Tracks a paged read: ``advance(payload)`` gives the next link to follow, or ``None`` at the end."""

    def __init__(self, organization_url: str) -> None:
        self._origin = origin(organization_url)
        self._previous: str | None = None
        self.pages = 0

    def check(self, link: object) -> str:
        """Return ``link`` if it points into the organization, else raise ``UnsafeLinkError``."""
        if isinstance(link, str):
            try:
                if origin(link) == self._origin:
                    return link
            except ValueError:  # a port that is not a number, or out of range
                pass
        raise UnsafeLinkError("the server's next link points outside the organization; not following it")

    def advance(self, payload: dict[str, Any]) -> str | None:
        """Record one page and return the link to the next, refusing foreign hosts and loops."""
        self.pages += 1
        link = payload.get("@odata.nextLink")
        if link is None:
            return None
        link = self.check(link)
        if link == self._previous:
            raise PagingLoopError("the server returned the same next link twice; stopping to avoid a loop")
        self._previous = link
        return link
