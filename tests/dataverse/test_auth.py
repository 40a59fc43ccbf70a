"""Tokens: cached until five minutes before expiry, refreshed on demand, errors wrapped without secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from azure.core.credentials import AccessToken

from hydration.clock import FakeClock
from hydration.dataverse.auth import REFRESH_MARGIN, DevelopmentToken, TokenProvider, is_loopback
from hydration.dataverse.errors import AuthError, FatalError

ORG = "https://org.crm.dynamics.com"
SECRET = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-part"


@dataclass
class FakeCredential:
    """Hands out numbered tokens that live ``lifetime`` seconds from the clock's time."""

    clock: FakeClock
    lifetime: int = 3600
    scopes: list[tuple[str, ...]] = field(default_factory=list)
    failure: Exception | None = None

    def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        if self.failure is not None:
            raise self.failure
        return AccessToken(f"token-{len(self.scopes)}", int(self.clock.now().timestamp()) + self.lifetime)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def credential(clock: FakeClock) -> FakeCredential:
    return FakeCredential(clock)


@pytest.fixture
def provider(credential: FakeCredential, clock: FakeClock) -> TokenProvider:
    return TokenProvider(credential, ORG + "/", clock=clock)


def test_asks_for_the_organization_scope(provider: TokenProvider, credential: FakeCredential) -> None:
    assert provider.token() == "token-1"
    assert credential.scopes == [(ORG + "/.default",)]


def test_caches_the_token(provider: TokenProvider, credential: FakeCredential, clock: FakeClock) -> None:
    assert provider.token() == "token-1"
    clock.advance(3600 - REFRESH_MARGIN - 1)
    assert provider.token() == "token-1"
    assert len(credential.scopes) == 1


def test_refreshes_five_minutes_before_expiry(
    provider: TokenProvider, credential: FakeCredential, clock: FakeClock
) -> None:
    assert REFRESH_MARGIN == 300
    provider.token()
    clock.advance(3600 - 300)
    assert provider.token() == "token-2"
    assert provider.token() == "token-2"
    assert len(credential.scopes) == 2


def test_expired_token_is_refreshed(provider: TokenProvider, clock: FakeClock) -> None:
    provider.token()
    clock.advance(10_000)
    assert provider.token() == "token-2"


def test_short_lived_token_is_fetched_every_time(clock: FakeClock) -> None:
    credential = FakeCredential(clock, lifetime=60)  # already inside the refresh margin
    provider = TokenProvider(credential, ORG, clock=clock)
    assert [provider.token() for _ in range(3)] == ["token-1", "token-2", "token-3"]


def test_invalidate_forgets_the_token(provider: TokenProvider, credential: FakeCredential) -> None:
    provider.token()
    provider.invalidate()
    assert provider.token() == "token-2"
    assert len(credential.scopes) == 2


def test_invalidate_before_any_token_is_harmless(provider: TokenProvider) -> None:
    provider.invalidate()
    assert provider.token() == "token-1"


def test_credential_errors_become_auth_errors_without_secrets(
    provider: TokenProvider, credential: FakeCredential
) -> None:
    credential.failure = RuntimeError(f"refresh failed for {SECRET}")
    with pytest.raises(AuthError) as caught:
        provider.token()
    assert isinstance(caught.value, FatalError)
    assert SECRET not in str(caught.value)
    assert "RuntimeError" in str(caught.value)
    assert ORG + "/.default" in str(caught.value)


def test_failure_after_a_cached_token_does_not_leak_it(
    provider: TokenProvider, credential: FakeCredential, clock: FakeClock
) -> None:
    credential.failure = None
    first = provider.token()
    clock.advance(10_000)
    credential.failure = ValueError("boom")
    with pytest.raises(AuthError) as caught:
        provider.token()
    assert first not in str(caught.value)


def test_provider_recovers_after_a_failure(provider: TokenProvider, credential: FakeCredential) -> None:
    credential.failure = OSError("no network")
    with pytest.raises(AuthError):
        provider.token()
    credential.failure = None
    assert provider.token() == "token-2"


def test_uses_the_wall_clock_by_default(credential: FakeCredential, clock: FakeClock) -> None:
    clock.advance(time.time() - clock.now().timestamp())
    provider = TokenProvider(credential, ORG)
    assert provider.token() == provider.token() == "token-1"


# -- development tokens and loopback ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1",
        "http://127.5.6.7:1/x",
        "http://[::1]:5000",
        "http://localhost:7071/",
        "http://LOCALHOST:7071",
        "https://localhost",
    ],
)
def test_loopback_urls(url: str) -> None:
    assert is_loopback(url)
    token = DevelopmentToken(url, "app").get_token("x/.default")
    assert token.token == "app"
    assert token.expires_on > time.time() + 3600


@pytest.mark.parametrize(
    "url",
    [
        ORG,
        "https://org.crm4.dynamics.com",
        "http://localhost.evil.example.com",
        "http://127.0.0.1.nip.io",
        "http://localhost@evil.example.com",
        "http://10.0.0.1",
        "http://0.0.0.0:8080",
        "http://[::]:8080",
        "not a url",
        "",
    ],
)
def test_other_hosts_are_not_loopback(url: str) -> None:
    assert not is_loopback(url)
    with pytest.raises(AuthError, match="loopback"):
        DevelopmentToken(url, "app")


def test_development_token_works_with_the_provider() -> None:
    url = "http://127.0.0.1:9999"
    provider = TokenProvider(DevelopmentToken(url, "tester"), url)
    assert provider.token() == "tester"


def test_token_provider_uses_a_development_token_only_for_loopback() -> None:
    from hydration.dataverse.auth import token_provider
    from hydration.dataverse.errors import AuthError

    assert token_provider("http://127.0.0.1:8765", development_user="dev").token() == "dev"
    with pytest.raises(AuthError):
        token_provider("https://contoso.crm.dynamics.com", development_user="dev")


def test_token_provider_defaults_to_default_azure_credential() -> None:
    from azure.identity import DefaultAzureCredential

    from hydration.dataverse.auth import token_provider

    provider = token_provider("https://contoso.crm.dynamics.com", managed_identity_client_id="abc")
    assert isinstance(provider.credential, DefaultAzureCredential)
    assert provider.scope == "https://contoso.crm.dynamics.com/.default"
