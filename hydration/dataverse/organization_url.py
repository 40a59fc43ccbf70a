r"""The organization URL as one value: parsed once, normalised once, compared by value everywhere.

``https://x``, ``HTTPS://X/`` and ``https://x:443`` name one organization; before this type they compared
equal in one place and unequal in another. ``OrganizationUrl`` holds the scheme and host lowercased and
the port only when it is not the scheme's default, so ``==`` is the one comparison.

``owns(link)`` decides whether a URL a server handed back (``@odata.nextLink``) may carry the bearer
token. It parses the link with ``urllib3.util.parse_url``, the parser ``requests`` connects with, so the
host it checks is the host a request would reach (``urlsplit`` reads ``http://a:1\\@b:2/`` as host ``b``
while the transport connects to ``a``). Anything the two parsers could read differently is refused
outright: backslashes, user info, percent signs in the authority, whitespace and non-ASCII text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_PORTS = {"https": 443, "http": 80}
_HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_AUTHORITY = re.compile(r"[a-z0-9.\-\[\]:]+")
_LINK_TEXT = re.compile(r"[\x21-\x7e]+")


_SHAPE = "scheme://host[:port], e.g. https://contoso.crm.dynamics.com"


class InvalidOrganizationUrlError(ValueError):
    """Text that is not an organization URL (``https://host[:port]`` with nothing after but ``/``).

    The message says what is wrong but never repeats the text: it may hold a password (``user:pw@``).
    """


@dataclass(frozen=True)
class OrganizationUrl:
    """``scheme://host[:port]``: scheme and host lowercased, the default port dropped; nothing else."""

    scheme: str
    host: str
    port: int | None = None
    """``None`` for the scheme's default port (443 for https, 80 for http)."""

    def __post_init__(self) -> None:
        if self.scheme not in DEFAULT_PORTS:
            raise InvalidOrganizationUrlError(
                f"not an organization URL: the scheme is not http or https ({_SHAPE})"
            )
        if not _valid_host(self.host):
            raise InvalidOrganizationUrlError(
                f"not an organization URL: no valid host name or address ({_SHAPE})"
            )
        if self.port is not None and (self.port == DEFAULT_PORTS[self.scheme] or not 0 < self.port < 65536):
            raise InvalidOrganizationUrlError(f"not an organization URL: the port is out of range ({_SHAPE})")

    @classmethod
    def parse(cls, text: object) -> OrganizationUrl:
        """The organization URL in ``text``; ``InvalidOrganizationUrlError`` for anything else.

        Accepts only ``scheme://host[:port]`` with an optional final ``/``: a path, query, fragment or
        user info is refused rather than dropped, so a URL that means something else is never taken.
        """
        if not isinstance(text, str) or not _LINK_TEXT.fullmatch(text) or "\\" in text:
            raise InvalidOrganizationUrlError(
                f"not an organization URL: empty, spaces or odd characters ({_SHAPE})"
            )
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:  # a port that is not a number, or a bracket that opens no IPv6 address
            raise InvalidOrganizationUrlError(
                f"not an organization URL: the port or address does not parse ({_SHAPE})"
            ) from exc
        if "@" in parts.netloc:
            raise InvalidOrganizationUrlError(
                f"not an organization URL: it holds a user name or password ({_SHAPE})"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidOrganizationUrlError(f"not an organization URL: it has a path or query ({_SHAPE})")
        scheme = parts.scheme.lower()
        if port == DEFAULT_PORTS.get(scheme):
            port = None
        return cls(scheme=scheme, host=(parts.hostname or "").lower(), port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port is None else f":{self.port}")

    @property
    def effective_port(self) -> int:
        """The port a connection goes to (the scheme's default when none is written)."""
        return DEFAULT_PORTS[self.scheme] if self.port is None else self.port

    @property
    def is_loopback(self) -> bool:
        """Whether the host is this machine (``localhost`` or a loopback address): the local emulator."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def owns(self, link: object) -> bool:
        """Whether ``link`` is an absolute URL that the transport would send to exactly this origin."""
        if not isinstance(link, str) or not _LINK_TEXT.fullmatch(link) or "\\" in link:
            return False
        try:
            parsed = parse_url(link)
            split = urlsplit(link)
            split_port = split.port
        except (LocationParseError, ValueError):
            return False
        if parsed.auth is not None or "@" in split.netloc or not _AUTHORITY.fullmatch(split.netloc.lower()):
            return False
        scheme = (parsed.scheme or "").lower()
        if scheme != self.scheme or (split.scheme or "").lower() != scheme:
            return False
        host = (parsed.host or "").lower().strip("[]")
        port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
        split_effective = split_port if split_port is not None else DEFAULT_PORTS[scheme]
        return host == self.host == (split.hostname or "") and port == self.effective_port == split_effective


def _valid_host(host: object) -> bool:
    if not isinstance(host, str) or not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))
