"""Application Insights: configured once, only with a connection string, exporting what the runbook queries.

The last test runs the real Azure Monitor distro in a child process (its providers are process-wide)
against a local ingestion endpoint, and reads the envelopes it sends: metric names, log fields and the
absence of request telemetry are checked as Application Insights would receive them.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from azure.identity import ManagedIdentityCredential
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

from hydration.azure_monitor import (
    AUTHENTICATION_STRING,
    CONNECTION_STRING,
    INSTRUMENTATIONS,
    AzureMonitor,
    managed_identity_client_id,
)
from hydration.service import services
from hydration.telemetry import NO_METRICS, OpenTelemetryMetrics

ROOT = Path(__file__).resolve().parents[2]
KEY = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
CONNECTION = f"{KEY};IngestionEndpoint=https://example.invalid/"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


class RecordingConfigure:
    """Stands in for ``configure_azure_monitor``: records the keyword arguments of each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> None:
        self.calls.append(options)


def test_without_a_connection_string_nothing_is_configured(app_env: dict[str, str]) -> None:
    configure = RecordingConfigure()
    monitor = AzureMonitor(configure)
    assert monitor.metrics({}) is NO_METRICS
    assert monitor.metrics({CONNECTION_STRING: "  "}) is NO_METRICS
    assert configure.calls == []
    assert monitor.configured is False

    svc = services(app_env)
    assert CONNECTION_STRING not in app_env
    assert svc.metrics is NO_METRICS
    assert svc.worker().metrics is NO_METRICS
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)  # the API's no-op proxy
    assert not [h for h in logging.getLogger("hydration").handlers if "opentelemetry" in type(h).__module__]


def test_a_connection_string_configures_the_exporter_once_with_every_instrumentation_off() -> None:
    configure = RecordingConfigure()
    monitor = AzureMonitor(configure)
    env = {CONNECTION_STRING: CONNECTION, AUTHENTICATION_STRING: f"ClientId={CLIENT_ID};Authorization=AAD"}
    first, second = monitor.metrics(env), monitor.metrics(env)
    assert isinstance(first, OpenTelemetryMetrics)
    assert isinstance(second, OpenTelemetryMetrics)
    assert len(configure.calls) == 1
    options = configure.calls[0]
    assert options["connection_string"] == CONNECTION
    assert options["logger_name"] == "hydration"
    assert options["enable_live_metrics"] is False
    assert set(options["instrumentation_options"]) == set(INSTRUMENTATIONS)
    assert {"requests", "urllib3", "azure_sdk"} <= set(INSTRUMENTATIONS)
    assert all(o == {"enabled": False} for o in options["instrumentation_options"].values())
    assert isinstance(options["credential"], ManagedIdentityCredential)


def test_without_entra_authentication_no_credential_is_passed() -> None:
    configure = RecordingConfigure()
    AzureMonitor(configure).metrics({CONNECTION_STRING: CONNECTION})
    assert "credential" not in configure.calls[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"ClientId={CLIENT_ID};Authorization=AAD", CLIENT_ID),
        (f" authorization = aad ; clientid = {CLIENT_ID} ", CLIENT_ID),
        ("Authorization=AAD", ""),
        (f"ClientId={CLIENT_ID}", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_the_authentication_string_names_the_identity(text: str | None, expected: str | None) -> None:
    assert managed_identity_client_id(text) == expected


# -- the real exporter, in a child process ---------------------------------------------------------


class Ingestion(BaseHTTPRequestHandler):
    """A local stand-in for the ingestion endpoint: keeps every envelope posted to ``/v2.1/track``."""

    envelopes: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)
        type(self).envelopes.extend(items if isinstance(items, list) else [items])
        answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def ingestion() -> Iterator[str]:
    Ingestion.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingestion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


CHILD = """
import logging, requests
from datetime import UTC, datetime, timedelta
from hydration.azure_monitor import AZURE_MONITOR
from hydration.checkpoints import Counters
from hydration.log_context import context_logger, step_fields
from hydration.state import TaskRecord
from hydration.statuses import Status
from hydration.telemetry import WAITED, ThrottleTally, task_end_fields
import os, sys

sink = AZURE_MONITOR.metrics(os.environ)
logging.getLogger("hydration").setLevel(logging.INFO)
with step_fields(run_id="20261204T000000Z-0a1b2c3d4", table="contact", lane="hydrate"):
    sink.rows("contact", "hydrate", Counters(written=7, already_correct=5, cleared=2))
    sink.throttled("contact", "hydrate", ThrottleTally(3, 1.5), handling=WAITED)
    context_logger("hydration.worker").info("a step record")
    requests.get(sys.argv[1] + "not-telemetry", timeout=5)  # no dependency may be recorded for it
    now = datetime.now(UTC)
    record = TaskRecord(run_id="20261204T000000Z-0a1b2c3d4", table="contact", status=Status.FAILED,
                        full=True, started=now - timedelta(seconds=42), ended=now, details="boom",
                        counters=Counters(written=7).to_dict())
    context_logger("hydration.failures").error("ended", extra=task_end_fields(record))
    sink.task_ended(record, "hydrate")
"""


def test_the_real_exporter_sends_the_metrics_and_fields_the_runbook_queries(ingestion: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        CONNECTION_STRING: f"{KEY};IngestionEndpoint={ingestion}",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", CHILD, ingestion],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kinds = {e["data"]["baseType"] for e in Ingestion.envelopes}
    assert "RemoteDependencyData" not in kinds  # the request above was not recorded
    assert "RequestData" not in kinds

    metrics_seen: dict[str, list[dict[str, Any]]] = {}
    for envelope in Ingestion.envelopes:
        if envelope["data"]["baseType"] == "MetricData":
            data = envelope["data"]["baseData"]
            for point in data["metrics"]:
                metrics_seen.setdefault(point["name"], []).append(
                    {"value": point["value"], **data["properties"]}
                )
    assert sum(p["value"] for p in metrics_seen["hydration.rows.written"]) == 7
    assert sum(p["value"] for p in metrics_seen["hydration.rows.cleared"]) == 2
    assert sum(p["value"] for p in metrics_seen["hydration.rows.already_correct"]) == 5
    assert sum(p["value"] for p in metrics_seen["hydration.throttled.responses"]) == 3
    assert sum(p["value"] for p in metrics_seen["hydration.throttled.seconds"]) == 1.5
    assert sum(p["value"] for p in metrics_seen["hydration.pass.duration"]) == pytest.approx(42, abs=0.1)
    ended = metrics_seen["hydration.tasks.ended"]
    assert ended[0]["hydration.status"] == "Failed"
    assert ended[0]["hydration.table"] == "contact"
    assert ended[0]["hydration.pass"] == "full"
    assert metrics_seen["hydration.throttled.responses"][0]["hydration.throttle"] == "waited"

    traces = [e["data"]["baseData"] for e in Ingestion.envelopes if e["data"]["baseType"] == "MessageData"]
    step = next(t for t in traces if t["message"] == "a step record")
    assert step["properties"]["hydration.run_id"] == "20261204T000000Z-0a1b2c3d4"
    assert step["properties"]["hydration.table"] == "contact"
    assert step["properties"]["hydration.lane"] == "hydrate"
    end = next(t for t in traces if t["message"] == "ended")
    assert end["severityLevel"] == 3  # Error, in Application Insights' severity levels
    assert end["properties"]["hydration.event"] == "task_ended"
    assert end["properties"]["hydration.status"] == "Failed"
    assert end["properties"]["hydration.rows.written"] == "7"
    assert end["properties"]["hydration.pass.duration"] == "42.0"
