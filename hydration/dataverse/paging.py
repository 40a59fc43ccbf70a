"""Following ``@odata.nextLink``: exactly as given, only to the organization, never in a loop.

The token-carrying request goes where the transport's parser says the link points, so the origin check
is ``OrganizationUrl.owns`` (urllib3's parser, with anything ambiguous refused), not ``urlsplit``.
"""

from __future__ import annotations

from typing import Any

from .errors import FatalError, UnsafeLinkError
from .organization_url import OrganizationUrl


class PagingLoopError(FatalError):
    """The server returned the same next link twice in a row."""


class Paginator:
    """Tracks a paged read: ``advance(payload)`` gives the next link to follow, or ``None`` at the end."""

    def __init__(self, organization: OrganizationUrl | str) -> None:
        self._organization = (
            organization if isinstance(organization, OrganizationUrl) else OrganizationUrl.parse(organization)
        )
        self._previous: str | None = None
        self.pages = 0

    def check(self, link: object) -> str:
        """``link`` if the transport would send it to the organization, else ``UnsafeLinkError``."""
        if isinstance(link, str) and self._organization.owns(link):
            return link
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
