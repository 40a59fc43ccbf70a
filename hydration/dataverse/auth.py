"""Bearer tokens for the Web API: azure-identity credentials, cached until shortly before expiry.

In Azure the credential is a managed identity (``DefaultAzureCredential`` by default); a user's own
machine can use the Azure CLI login. A loopback organization URL (the local emulator) may instead use a
fixed development token that names a user, and only a loopback URL may.
"""

from __future__ import annotations

import threading
from typing import Protocol
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken

from hydration.clock import SYSTEM_CLOCK, Clock

from .errors import AuthError
from .organization_url import OrganizationUrl

REFRESH_MARGIN = 300


class TokenCredential(Protocol):
    """The part of azure-identity's credential protocol the client uses."""

    def get_token(self, *scopes: str) -> AccessToken:
        """A token for the scopes."""
        ...


def is_loopback(url: OrganizationUrl | str) -> bool:
    """Whether a URL's host is this machine (``localhost`` or a loopback address); any path is ignored."""
    if isinstance(url, OrganizationUrl):
        return url.is_loopback
    try:
        parts = urlsplit(url)
        return OrganizationUrl.parse(f"{parts.scheme}://{parts.netloc}").is_loopback
    except ValueError:  # InvalidOrganizationUrlError, or text urlsplit cannot split
        return False


class DevelopmentToken:
    """A fixed token naming a user, for the local emulator only (refused for any other host)."""

    def __init__(
        self, organization_url: OrganizationUrl | str, user: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if not is_loopback(organization_url):
            raise AuthError("a development token is only allowed for a loopback organization URL")
        self._user = user
        self._clock = clock

    def get_token(self, *scopes: str) -> AccessToken:
        """A token whose text is the user name, valid for a day from now."""
        return AccessToken(self._user, int(self._clock.now().timestamp()) + 86_400)


class TokenProvider:
    """Gets and caches the bearer token for one organization (thread-safe)."""

    def __init__(
        self,
        credential: TokenCredential,
        organization_url: OrganizationUrl | str,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._credential = credential
        self._scope = str(organization_url).rstrip("/") + "/.default"
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
            if (
                self._token is None
                or self._token.expires_on - REFRESH_MARGIN <= self._clock.now().timestamp()
            ):
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
    organization_url: OrganizationUrl | str,
    *,
    development_user: str | None = None,
    managed_identity_client_id: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> TokenProvider:
    """The token source for an organization: azure-identity's ``DefaultAzureCredential`` by default.

    ``DefaultAzureCredential`` tries, in order, environment variables, workload identity, managed identity
    (``managed_identity_client_id`` selects a user-assigned one), then developer logins such as the Azure
    CLI. ``development_user`` instead sends a fixed token naming that user, and only to a loopback URL
    (the local emulator).
    """
    if development_user is not None:
        development = DevelopmentToken(organization_url, development_user, clock=clock)
        return TokenProvider(development, organization_url, clock=clock)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
    return TokenProvider(credential, organization_url, clock=clock)
