"""Bearer tokens for the Web API: azure-identity credentials, cached until shortly before expiry.

In Azure the credential is a managed identity (``DefaultAzureCredential`` by default); a user's own
machine can use the Azure CLI login. A loopback organization URL (the local emulator) may instead use a
fixed development token that names a user, and only a loopback URL may.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken

from .errors import AuthError

REFRESH_MARGIN = 300


class TokenCredential(Protocol):
    """The part of azure-identity's credential protocol the client uses."""

    def get_token(self, *scopes: str) -> AccessToken:
        """A token for the scopes."""
        ...


def is_loopback(url: str) -> bool:
    """Whether a URL's host is this machine (``localhost`` or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevelopmentToken:
    """A fixed token naming a user, for the local emulator only (refused for any other host)."""

    def __init__(self, organization_url: str, user: str) -> None:
        if not is_loopback(organization_url):
            raise AuthError("a development token is only allowed for a loopback organization URL")
        self._user = user

    def get_token(self, *scopes: str) -> AccessToken:
        """A never-expiring token whose text is the user name."""
        return AccessToken(self._user, int(time.time()) + 86_400)


class TokenProvider:
    """Gets and caches the bearer token for one organization (thread-safe)."""

    def __init__(
        self, credential: TokenCredential, organization_url: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._credential = credential
        self._scope = organization_url.rstrip("/") + "/.default"
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    @property
    def scope(self) -> str:
        """The scope tokens are asked for: the organization URL + ``/.default``."""
        return self._scope

    @property
    def credential(self) -> TokenCredential:
        """The credential tokens come from."""
        return self._credential

    def token(self) -> str:
        """A valid token; refreshed when it expires within five minutes. Never logged."""
        with self._lock:
            if self._token is None or self._token.expires_on - REFRESH_MARGIN <= self._clock():
                try:
                    self._token = self._credential.get_token(self._scope)
                except Exception as exc:
                    raise AuthError(f"could not get a token for {self._scope}: {type(exc).__name__}") from exc
            return self._token.token

    def invalidate(self) -> None:
        """Forget the cached token (after a 401)."""
        with self._lock:
            self._token = None


def token_provider(
    organization_url: str,
    *,
    development_user: str | None = None,
    managed_identity_client_id: str | None = None,
) -> TokenProvider:
    """The token source for an organization: azure-identity's ``DefaultAzureCredential`` by default.

    ``DefaultAzureCredential`` tries, in order, environment variables, workload identity, managed identity
    (``managed_identity_client_id`` selects a user-assigned one), then developer logins such as the Azure
    CLI. ``development_user`` instead sends a fixed token naming that user, and only to a loopback URL
    (the local emulator).
    """
    if development_user is not None:
        return TokenProvider(DevelopmentToken(organization_url, development_user), organization_url)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
    return TokenProvider(credential, organization_url)
