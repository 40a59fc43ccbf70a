"""The HTTP face of the emulator: a WSGI application on werkzeug, and a server to start and stop.

Requests under ``/api/data/v9.2/`` are the Web API (bearer token required); requests under
``/_emulator/`` are the control API for tests (see ``control``). ``EmulatorServer`` runs the app on a
loopback port in a background thread, which is how tests use it; ``python -m dataverse_emulator`` runs
the same server in the foreground.

Every top-level Web API request passes one gate (``EmulatorApp._serve``): injected faults (``faults``)
first, then the service protection limits (``limits``), then the handlers inside a ``RequestTally``
that prices the request; the answer is delayed by that cost times the time factor after the store's
lock is released, so concurrent requests overlap as on a real server.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import api
from .batching import API_PREFIX, run_batch, split_query
from .control import handle_control
from .errors import NOT_A_MEMBER, SERVER_ERROR, ApiError
from .exchange import ApiRequest, ApiResponse, error_response, http_date, json_response
from .faults import DroppedConnectionError, FaultRule
from .generator import seed_organization
from .limits import Throttle, throttle_error
from .organization import Organization, SeedParams
from .request_tally import tally_batch_part, tallying
from .store import Store
from .tls import TlsFiles, generate

MAX_URL = 32_768
MAX_BODY = 16 * 1024 * 1024
TENANT = "00000000-0000-0000-0000-0000000000aa"
BUSINESS_LOGIC_HEADERS = (
    "MSCRM.BypassBusinessLogicExecution",
    "MSCRM.BypassCustomPluginExecution",
    "MSCRM.SuppressCallbackRegistrationExpanderJob",
)
"""Optional headers that skip custom logic on a write; the stats count each write that carries one."""
WRITE_KINDS = frozenset(
    {
        "update",
        "create",
        "delete",
        "update_multiple",
        "create_multiple",
        "upsert_multiple",
        "associate",
        "disassociate",
        "write_property",
    }
)
log = logging.getLogger(__name__)


def token_user(token: str) -> str | None:
    """The calling user a bearer token names: a JWT's ``oid``/``appid``/``upn``, else the token text."""
    token = token.strip()
    if not token or len(token) > 8192 or not token.isprintable():
        return None
    parts = token.split(".")
    if len(parts) == 3:
        try:
            padded = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(padded))
        except (binascii.Error, ValueError):
            return None
        if isinstance(claims, dict):
            for claim in ("oid", "appid", "azp", "upn", "sub"):
                if isinstance(claims.get(claim), str) and claims[claim]:
                    return str(claims[claim])
        return None
    return token[:200]


class EmulatorApp:
    """The WSGI application."""

    def __init__(self, org: Organization) -> None:
        self.org = org

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Serve one WSGI request."""
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        """Answer one HTTP request."""
        path = request.path
        if path.startswith("/_emulator/"):
            status, payload = handle_control(self.org, request.method, path[len("/_emulator/") :], request)
            return Response(json.dumps(payload), status=status, content_type="application/json")
        answer = self._web_api(request)
        headers = {
            **answer.headers,
            "x-ms-dop-hint": str(self.org.modes.dop_hint),
            "x-ms-service-request-id": secrets.token_hex(16),
        }
        response = Response(answer.body, status=answer.status, headers=headers)
        if not answer.body:
            response.headers.pop("Content-Type", None)
        return response

    def _web_api(self, request: Request) -> ApiResponse:
        raw_path = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
        if len(raw_path) > MAX_URL:
            return error_response(ApiError(414, "0x80048d19", "The request URL is too long."))
        if not request.path.startswith(API_PREFIX):
            return error_response(
                ApiError(404, "0x8006088a", f"Resource not found for the segment '{request.path}'.")
            )
        user = self._authenticate(request)
        if isinstance(user, ApiResponse):
            return user
        if (request.content_length or 0) > MAX_BODY:
            return error_response(ApiError(413, "0x80048d19", "The request body is too large."))
        base_url = request.host_url.rstrip("/") + API_PREFIX
        try:
            query = split_query(request.query_string.decode("latin-1"))
        except ApiError as exc:
            return error_response(exc)
        api_request = ApiRequest(
            request.method,
            unquote(request.path[len(API_PREFIX) :]),
            query,
            {k.lower(): v for k, v in request.headers.items()},
            request.get_data(),
            user,
            base_url,
        )
        return self._serve(api_request, request.environ)

    def _serve(self, request: ApiRequest, environ: dict[str, Any]) -> ApiResponse:
        """Fault, throttle or answer one authenticated top-level request, delayed by what it cost."""
        fault = self.org.faults.pick(request.method, request.path, request.user)
        if fault is not None and fault.kind != "slow" and not fault.after:
            return self._fail(fault, request, environ)
        limits = self.org.limits
        ticket = limits.admit(request.user)
        if isinstance(ticket, Throttle):
            return self._throttled(ticket, request)
        started = time.monotonic()
        try:
            with tallying() as tally:
                response = self.handle(request)
            cost = limits.charge(ticket, tally)
            if ticket.usage is not None:
                self.org.stats.charge(request.user, cost)
            delay = cost + (fault.delay_seconds if fault is not None else 0.0)
            # The answer comes its modelled time after the request arrived: the emulator's own work
            # (and any wait for its store lock) counts toward that time instead of adding to it.
            hold = delay * limits.config.time_factor - (time.monotonic() - started)
            if hold > 0:
                time.sleep(hold)  # outside the store lock: answers overlap
        finally:
            limits.release(ticket)
        if fault is not None and fault.kind == "slow":
            self.org.stats.fault(fault.label, request.user)
        elif fault is not None:
            return self._fail(fault, request, environ)  # after it ran: the client cannot know it did
        return response

    def _throttled(self, throttle: Throttle, request: ApiRequest) -> ApiResponse:
        """The 429 of a service protection limit; the request is not run."""
        self.org.stats.request("throttled", request.user, 429, inner=False)
        self.org.stats.throttle(throttle.limit, request.user)
        self.org.stats.charge(request.user, throttle.cost_seconds)
        config = self.org.limits.config
        return error_response(throttle_error(throttle.limit, config, throttle.retry_after))

    def _fail(self, fault: FaultRule, request: ApiRequest, environ: dict[str, Any]) -> ApiResponse:
        """Answer an injected fault, or drop the connection without an answer."""
        self.org.stats.fault(fault.label, request.user)
        if fault.kind == "answer":
            answer: ApiResponse | None = json_response(200, fault.body)
        else:
            answer = None if fault.kind == "drop" else error_response(fault.error(self.org.limits.config))
        if not fault.after:  # the request never ran: count it as one the fault answered
            self.org.stats.request("fault", request.user, answer.status if answer else None, inner=False)
        if answer is not None:
            return answer
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            # werkzeug keeps HTTP/1.1 connections open: shut the socket so the client sees it end.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise DroppedConnectionError(f"fault: dropped {request.method} {request.path}")

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Route one Web API request (top level or a batch part) and count it."""
        if request.inner:
            tally_batch_part()
        try:
            response = api.handle(self.org, request, lambda r: run_batch(self.org, r, self.handle))
        except Exception:  # a bug must still answer as Dataverse would, never drop the connection
            log.exception("emulator failure on %s %s", request.method, request.path)
            response = error_response(ApiError(500, SERVER_ERROR, "An unexpected error occurred."))
        self.org.stats.request(response.kind, request.user, response.status, inner=request.inner)
        if response.kind in WRITE_KINDS:
            for name in BUSINESS_LOGIC_HEADERS:
                value = request.header(name)
                if value is not None:
                    self.org.stats.write_header(name, value)
        return response

    def _authenticate(self, request: Request) -> str | ApiResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = token_user(token) if scheme.lower() == "bearer" else None
        if user is None:
            self.org.stats.request("unauthenticated", None, 401, inner=False)
            host = request.host_url.rstrip("/")
            return ApiResponse(
                401,
                {
                    "WWW-Authenticate": f"Bearer authorization_uri=https://login.microsoftonline.com/{TENANT}"
                    f"/oauth2/authorize, resource_id={host}/",
                    "Content-Length": "0",
                },
            )
        if self.org.modes.users is not None and user not in self.org.modes.users:
            self.org.stats.request("forbidden", user, 403, inner=False)
            return error_response(
                ApiError(403, NOT_A_MEMBER, "The user is not a member of the organization.")
            )
        return user


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler with the emulator's clock in ``Date`` and no access log."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        app = getattr(self.server, "app", None)
        if timestamp is None and isinstance(app, EmulatorApp):
            return http_date(app.org.clock.now())
        return super().date_time_string(timestamp)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are counted by the control API, not logged."""


class EmulatorServer:
    """A running emulator on a loopback port; use as a context manager or call ``start``/``stop``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: SeedParams | None = None,
        database: str | None = None,
        modes: dict[str, Any] | None = None,
        tls: bool | TlsFiles = False,
    ) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if database is None or tls is True:
            self._tempdir = tempfile.TemporaryDirectory(prefix="dataverse-emulator-")
        workdir = Path(self._tempdir.name) if self._tempdir else Path()
        database = database or str(workdir / "org.sqlite3")
        self.tls: TlsFiles | None = generate(workdir, host) if tls is True else (tls or None)
        """The files HTTPS is served with (``None``: plain HTTP); ``tls.ca`` is the CA to trust."""
        self.org = Organization(store=Store(database), seed=seed or SeedParams())
        if modes:
            self.org.modes.update(modes, allow_seed=True)
        seed_organization(self.org)
        self.app = EmulatorApp(self.org)
        # Bind here so a taken port raises OSError (werkzeug would print and exit the process).
        listener = socket.create_server((host, port))
        try:
            self._server: BaseWSGIServer = make_server(
                host,
                listener.getsockname()[1],
                self.app,
                threaded=True,
                request_handler=_Handler,
                fd=listener.fileno(),
                ssl_context=self.tls.context() if isinstance(self.tls, TlsFiles) else None,
            )
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        setattr(self._server, "daemon_threads", True)  # noqa: B010 - ThreadingMixIn attribute
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:<port>``: the organization URL (what users configure)."""
        host = self._server.server_address[0]
        scheme = "https" if self.tls else "http"
        return (
            f"{scheme}://{host if isinstance(host, str) else host.decode()}:{self._server.server_address[1]}"
        )

    @property
    def api_url(self) -> str:
        """The Web API root, ``<base_url>/api/data/v9.2/``."""
        return self.base_url + API_PREFIX

    def start(self) -> EmulatorServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dataverse-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving, wait for the thread, close the database."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
        self.org.store.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
