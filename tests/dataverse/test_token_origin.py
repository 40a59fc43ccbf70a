"""The bearer token goes only to the organization's exact origin, over real loopback sockets.

Two small servers on 127.0.0.1: the "organization" answers a first page whose next link is built so
that ``urlsplit`` reads the organization's host and port while ``requests`` (urllib3) connects to the
"other" server. The other server must receive nothing at all, token or not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hydration.dataverse.auth import DevelopmentToken, TokenProvider
from hydration.dataverse.client import DataverseClient
from hydration.dataverse.errors import UnsafeLinkError


@dataclass
class Server:
    """A loopback HTTP server that records every request and answers with ``body``."""

    body: dict[str, object] = field(default_factory=dict)
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Authorization header) of every request received."""
    port: int = 0


def serve(server: Server) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.seen.append((self.path, self.headers.get("Authorization")))
            payload = json.dumps(server.body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    organization, other = Server(), Server(body={"value": [{"stolen": True}]})
    running = [serve(organization), serve(other)]
    yield organization, other
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


def client_for(organization: Server) -> DataverseClient:
    url = f"http://127.0.0.1:{organization.port}"
    return DataverseClient(
        organization_url=url, tokens=TokenProvider(DevelopmentToken(url, "secret-user"), url)
    )


def split_link(organization: Server, other: Server) -> str:
    r"""The link of the issue: ``http://127.0.0.1:OTHER\\@127.0.0.1:ORG/...``."""
    return (
        f"http://127.0.0.1:{other.port}\\@127.0.0.1:{organization.port}/api/data/v9.2/contacts?$skiptoken=2"
    )


def test_a_next_link_that_splits_the_parsers_is_never_followed(servers: tuple[Server, Server]) -> None:
    organization, other = servers
    organization.body = {"value": [{"contactid": "1"}], "@odata.nextLink": split_link(organization, other)}
    client = client_for(organization)
    with pytest.raises(UnsafeLinkError):
        list(client.pages("contacts", params={}, page_size=10, kind="read"))
    assert [path for path, _ in organization.seen] == ["/api/data/v9.2/contacts"]
    assert organization.seen[0][1] == "Bearer secret-user"
    assert other.seen == []


def test_a_saved_link_that_splits_the_parsers_is_never_followed(servers: tuple[Server, Server]) -> None:
    organization, other = servers
    client = client_for(organization)
    start = split_link(organization, other)
    with pytest.raises(UnsafeLinkError):
        list(client.pages("contacts", params={}, page_size=10, kind="read", start=start))
    assert organization.seen == []
    assert other.seen == []
