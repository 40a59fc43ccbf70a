"""Application Insights through OpenTelemetry, on only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set.

The composition root (``service.services``) asks ``AZURE_MONITOR.metrics(env)`` for the engine's metrics
sink. Without a connection string nothing is configured and the sink does nothing. With one, the Azure
Monitor distro is configured once per process, and:

- metrics go to ``customMetrics`` (``telemetry`` names them);
- records of the ``hydration`` loggers go to ``traces``, with their structured fields (run id, table,
  lane, a task's status and counts) as ``customDimensions``; other libraries' records do not;
- the distro's automatic instrumentations are all off. Those of ``requests``, ``urllib3`` and the Azure
  SDK would record every Dataverse and storage request as a dependency with its URL, and those URLs name
  source rows (``In`` filters, retry-list keys): row keys stay out of telemetry as they stay out of logs.

The Application Insights resource deployed by ``infra/`` accepts Entra ID authentication only. The
exporter then authenticates as the managed identity named by ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
(``ClientId=<client id>;Authorization=AAD``, the setting the Functions host itself reads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .telemetry import NO_METRICS, OpenTelemetryMetrics, PassMetrics

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
LOGGER = "hydration"
"""The logger whose records (and its children's) are exported."""
INSTRUMENTATIONS = ("azure_sdk", "requests", "urllib", "urllib3", "django", "fastapi", "flask", "psycopg2")
"""The distro's automatic instrumentations, every one turned off (see the module's docstring)."""

Configure = Callable[..., None]
"""``azure.monitor.opentelemetry.configure_azure_monitor`` or a stand-in with its keyword arguments."""


def _distro_configure(**options: Any) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(**options)


def managed_identity_client_id(authentication: str | None) -> str | None:
    """The client id of ``ClientId=…;Authorization=AAD``; ``""`` for AAD without a client id.

    ``None`` when the string does not ask for Entra ID (then the exporter sends without a credential).
    """
    parts: dict[str, str] = {}
    for item in (authentication or "").split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            parts[key.strip().lower()] = value.strip()
    if parts.get("authorization", "").lower() != "aad":
        return None
    return parts.get("clientid", "")


class AzureMonitor:
    """Configures the Azure Monitor exporter at most once, and hands out the metrics sink."""

    def __init__(self, configure: Configure = _distro_configure) -> None:
        self._configure = configure
        self._lock = threading.Lock()
        self.configured = False
        """Whether the exporter was configured in this process."""

    def metrics(self, env: Mapping[str, str]) -> PassMetrics:
        """The metrics sink for ``env``: OpenTelemetry's when a connection string is set, else none."""
        connection = (env.get(CONNECTION_STRING) or "").strip()
        if not connection:
            return NO_METRICS
        with self._lock:
            if not self.configured:
                self._configure(**self.options(connection, env.get(AUTHENTICATION_STRING)))
                self.configured = True
        return OpenTelemetryMetrics()

    @staticmethod
    def options(connection: str, authentication: str | None) -> dict[str, Any]:
        """The distro's keyword arguments for a connection string and an authentication string."""
        options: dict[str, Any] = {
            "connection_string": connection,
            "logger_name": LOGGER,
            "instrumentation_options": {name: {"enabled": False} for name in INSTRUMENTATIONS},
            "enable_live_metrics": False,
        }
        client_id = managed_identity_client_id(authentication)
        if client_id is not None:
            from azure.identity import ManagedIdentityCredential

            options["credential"] = (
                ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
            )
        return options


AZURE_MONITOR = AzureMonitor()
"""The process's one exporter configuration (OpenTelemetry's providers are process-wide)."""
