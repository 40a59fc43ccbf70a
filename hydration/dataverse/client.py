"""The Dataverse Web API client on ``requests``: one place for auth, retries, throttling and paging.

Every answer goes through ``errors.classify``. Transient failures (5xx, 408, connection errors) are
retried a few times with backoff; a 429 whose ``Retry-After`` is short is waited out in-process, a
long one is raised as ``ThrottledError`` so the worker can re-enqueue with a delay instead of holding a
Functions instance. Attempts within one call are spaced by at least the exponential backoff floor,
even when the server says ``Retry-After: 0``. The server's ``Date`` header is kept as the server time the
hydration windows use, unless it is further ahead of this host's clock than ``MAX_CLOCK_SKEW``: one
answer from the future would otherwise move a table's watermark past every change still to come. The
local emulator (a loopback organization) is exempt: its clock is moved ahead on purpose through its
control API, to let mapping changes settle without waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from hydration.clock import SYSTEM_CLOCK, Clock
from hydration.log_context import context_logger

from . import batch as batch_format
from .auth import TokenProvider
from .backoff import delay
from .errors import (
    AuthError,
    Classified,
    DataverseError,
    ThrottledError,
    TransientError,
    Verdict,
    classify,
)
from .organization_url import OrganizationUrl
from .paging import Paginator

API_PATH = "/api/data/v9.2/"
MAX_CLOCK_SKEW = timedelta(minutes=5)
"""A ``Date`` answer header further ahead of the host's clock than this is ignored, not believed."""
log = context_logger(__name__)


COUNT_LIMIT = 5000
"""The most Dataverse's ``$count`` counts (Microsoft Learn, "Count rows"): a larger result answers 5,000."""


@dataclass(frozen=True)
class RowCount:
    """A ``$count`` answer: the rows counted, and whether the count stopped at ``COUNT_LIMIT``."""

    rows: int
    at_least: bool
    """More rows may exist than ``rows``."""


@dataclass(frozen=True)
class ClientSettings:
    """How the client behaves; defaults suit a real organization."""

    max_retries: int = 4
    """In-process retries of a transient failure or a short throttle."""
    inline_throttle_limit: float = 20.0
    """A ``Retry-After`` up to this many seconds is waited out in-process; a longer one is raised."""
    timeout: float = 120.0
    bypass_business_logic: str | None = None
    """``MSCRM.BypassBusinessLogicExecution`` on writes (``CustomSync,CustomAsync``); needs a privilege."""
    suppress_flows: bool = False
    """``MSCRM.SuppressCallbackRegistrationExpanderJob: true`` on writes: Power Automate flows do not fire."""


@dataclass
class RequestCounters:
    """What the client did, for task outcomes and benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    throttled_seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str) -> None:
        """Count one request of a kind."""
        with self.lock:
            self.requests += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


class DataverseClient:
    """A client for one organization (``https://org.crm.dynamics.com`` or the local emulator)."""

    def __init__(
        self,
        *,
        organization_url: OrganizationUrl | str,
        tokens: TokenProvider,
        settings: ClientSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.organization = (
            organization_url
            if isinstance(organization_url, OrganizationUrl)
            else OrganizationUrl.parse(organization_url)
        )
        self.organization_url = str(self.organization)
        self._trust_any_date = self.organization.is_loopback  # the emulator's clock is moved on purpose
        self.api_url = self.organization_url + API_PATH
        self.settings = settings or ClientSettings()
        self.counters = RequestCounters()
        self._tokens = tokens
        self.clock = clock
        """The clock the client waits on and measures the server's time with (metadata shares it)."""
        self._session_factory = session_factory
        self._local = threading.local()
        self._server_time: datetime | None = None
        self._server_time_at = 0.0
        self.dop_hint: int | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
        return session

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.api_url + path.lstrip("/")

    def write_headers(self) -> dict[str, str]:
        """Optional bypass headers for writes, as configured (off by default)."""
        headers: dict[str, str] = {}
        if self.settings.bypass_business_logic:
            headers["MSCRM.BypassBusinessLogicExecution"] = self.settings.bypass_business_logic
        if self.settings.suppress_flows:
            headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] = "true"
        return headers

    def server_now(self, *, max_age: float = 60.0) -> datetime:
        """The server's clock: the last ``Date`` answer header plus the time since.

        Asked afresh (one ``WhoAmI``) when no answer came within ``max_age`` seconds, so a pass's
        window is never computed from a stale reading. ``Date`` has whole seconds: callers allow for it.
        A ``Date`` too far ahead of the host's clock is never used (see ``MAX_CLOCK_SKEW``).
        """
        if self._server_time is None or self.clock.monotonic() - self._server_time_at > max_age:
            self.request("GET", "WhoAmI", kind="whoami")
        if self._server_time is None:
            raise TransientError("the answer to WhoAmI has no usable Date header")
        return self._server_time + _seconds(self.clock.monotonic() - self._server_time_at)

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request with retries; return the answer or raise a ``DataverseError``."""
        url = self._url(path)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, url, params, json_body, data, headers)
            except requests.RequestException as exc:
                classified = Classified(
                    Verdict.TRANSIENT, 0, message=f"connection failed: {type(exc).__name__}"
                )
            else:
                self.counters.count(kind)
                self._observe(response)
                classified = classify(response.status_code, response.headers, response.content)
                if classified.verdict is Verdict.OK:
                    return response
                if response.status_code == 401 and attempt == 1:
                    self._tokens.invalidate()
                    continue
            if not self._retry(classified, attempt, method, kind):
                raise classified.error()

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        all_headers = {
            "Authorization": f"Bearer {self._tokens.token()}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            **(headers or {}),
        }
        return self._session().request(
            method,
            url,
            params=params,
            json=json_body,
            data=data,
            headers=all_headers,
            timeout=self.settings.timeout,
            allow_redirects=False,
        )

    def _observe(self, response: requests.Response) -> None:
        server_time = _date(response.headers.get("Date"))
        if server_time is not None and self._believable(server_time):
            self._server_time = server_time
            self._server_time_at = self.clock.monotonic()
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit() and int(hint) > 0:
            self.dop_hint = int(hint)

    def _believable(self, server_time: datetime) -> bool:
        """Whether a ``Date`` may be used: not further ahead of the host's clock than the allowed skew."""
        if self._trust_any_date or server_time <= self.clock.now() + MAX_CLOCK_SKEW:
            return True
        log.warning(
            "ignored the server's Date %s: more than %s ahead of this host's clock",
            server_time.isoformat(),
            MAX_CLOCK_SKEW,
        )
        return False

    def _retry(self, classified: Classified, attempt: int, method: str, kind: str) -> bool:
        if classified.verdict is Verdict.FATAL or attempt > self.settings.max_retries:
            return False
        wait = delay(attempt, retry_after=classified.retry_after)
        if classified.verdict is Verdict.THROTTLED:
            if wait > self.settings.inline_throttle_limit:
                return False
            with self.counters.lock:
                self.counters.throttled += 1
                self.counters.throttled_seconds += wait
        with self.counters.lock:
            self.counters.retries += 1
        log.info(
            "retrying %s %s after %s in %.1fs (attempt %d)", method, kind, classified.status, wait, attempt
        )
        self.clock.sleep(wait)
        return True

    # -- reads --------------------------------------------------------------------------------

    def get_json(
        self, path: str, *, kind: str, params: Mapping[str, str] | None = None, **headers: str
    ) -> Any:
        """GET and decode JSON."""
        response = self.request("GET", path, kind=kind, params=params, headers=headers or None)
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"the answer to {kind} is not JSON") from exc

    def pages(
        self, path: str, *, params: Mapping[str, str], page_size: int, kind: str, start: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield ``(rows, next_link)`` per page; ``start`` resumes from a saved next link."""
        paginator = Paginator(self.organization_url)
        prefer = f"odata.maxpagesize={page_size}"
        if start is not None:
            paginator.check(start)
            payload = self.get_json(start, kind=kind, Prefer=prefer)
        else:
            payload = self.get_json(path, kind=kind, params=params, Prefer=prefer)
        while True:
            link = paginator.advance(payload)
            rows = payload.get("value")
            if not isinstance(rows, list):
                raise TransientError(f"the answer to {kind} has no 'value' list")
            yield rows, link
            if link is None:
                return
            payload = self.get_json(link, kind=kind, Prefer=prefer)

    def count(self, entity_set: str, *, kind: str, where: str | None = None) -> RowCount:
        """``<set>/$count`` (with ``$filter`` when ``where``): a plain-text number, capped by Dataverse.

        An answer that is not a number is a ``TransientError``, like any other malformed answer.
        """
        params = {"$filter": where} if where else None
        text = self.request("GET", f"{entity_set}/$count", kind=kind, params=params).text
        text = text.strip().lstrip("\ufeff")
        if not text.isdigit():
            raise TransientError(f"the answer to {kind} is not a count")
        rows = int(text)
        return RowCount(rows=rows, at_least=rows >= COUNT_LIMIT)

    def whoami(self) -> dict[str, Any]:
        """``WhoAmI``: proves the token works and reads the recommended parallelism."""
        result: dict[str, Any] = self.get_json("WhoAmI", kind="whoami")
        return result

    # -- batches ------------------------------------------------------------------------------

    def batch(
        self, parts: Sequence[batch_format.Part], *, kind: str, continue_on_error: bool = True
    ) -> list[batch_format.PartResult]:
        """Send parts in one ``$batch`` (outside change sets) and return their answers in order."""
        body, content_type = batch_format.build(parts, API_PATH)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self.request("POST", "$batch", kind=kind, data=body, headers=headers)
        results = batch_format.parse(response.content, response.headers.get("Content-Type", ""))
        if continue_on_error and len(results) != len(parts):
            raise TransientError(f"the $batch answer has {len(results)} parts for {len(parts)} requests")
        return results


def _date(header: str | None) -> datetime | None:
    """The time in a ``Date`` header, or ``None`` when absent or unparsable."""
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


__all__ = [
    "AuthError",
    "ClientSettings",
    "DataverseClient",
    "DataverseError",
    "RequestCounters",
    "ThrottledError",
]
