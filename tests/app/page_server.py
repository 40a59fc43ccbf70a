"""The status function served over real HTTP, as the Functions host would serve it, for a browser.

A small threaded HTTP server on 127.0.0.1 turns each GET into the ``func.HttpRequest`` the host would
build and calls the app's own ``status`` function (from ``function_app``), then writes its status,
headers and body back. The browser thus sees exactly the answer the deployed route gives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from tests.functions import app_functions


class StatusRoute(BaseHTTPRequestHandler):
    """``GET /api/status...`` → the ``status`` function; anything else 404."""

    def do_GET(self) -> None:
        """Answer one GET through the app's function."""
        parts = urlsplit(self.path)
        if parts.path != "/api/status":
            self.send_error(404)
            return
        request = func.HttpRequest(
            method="GET",
            url=f"http://{self.headers.get('Host', 'localhost')}{self.path}",
            body=b"",
            params=dict(parse_qsl(parts.query)),
        )
        response: func.HttpResponse = app_functions()["status"].get_user_function()(request)
        body = response.get_body()
        self.send_response(response.status_code)
        self.send_header("Content-Type", f"{response.mimetype}; charset={response.charset}")
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reports what matters."""


@contextmanager
def serving() -> Iterator[str]:
    """Serve the status route on a free local port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusRoute)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
