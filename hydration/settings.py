"""The app's settings: every name it reads, its default, and one validated, frozen object.

Settings are read once, inside a function call (never at import: an exception at import time makes the
Functions host load no functions at all), and every problem is reported together with the setting's
name, so a misconfigured app says what to fix instead of failing on its first request.

``SETTINGS`` (in ``setting_list``) is the single list of what the app reads; the deployment
(``infra/``), the ``local.settings.sample.json`` and the README are checked against it by the tests.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .dataverse.client import ClientSettings
from .dataverse.metadata import LookupSpec
from .dataverse.odata import InvalidNameError
from .dataverse.organization_url import InvalidOrganizationUrlError, OrganizationUrl
from .link_settings import LinkSettings
from .relink_rule import RelinkLimits
from .sample import DEFAULT_MIN_MATCH, MIN_MATCH_RANGE
from .setting_list import AZURITE as AZURITE
from .setting_list import DEVELOPMENT_USER as DEVELOPMENT_USER
from .setting_list import SETTINGS as SETTINGS
from .setting_list import STORAGE as STORAGE
from .setting_list import Setting as Setting
from .storage.queues import AzureTaskQueue
from .storage.tables import AzureStateTables

QUEUE_NAME = "hydration-tasks"
"""The job queue; the host moves messages that keep failing to ``hydration-tasks-poison``."""
POISON_QUEUE_NAME = QUEUE_NAME + "-poison"
NAMES = frozenset(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}
_NCRONTAB = re.compile(r"^\S+( \S+){5}$")
_BYPASS = ("CustomSync", "CustomAsync", "CustomSync,CustomAsync")


_USERINFO = re.compile(r"(?<=//)[^/@]*@")
_SECRET_PARAMETER = re.compile(
    r"(?i)\b(sig|signature|se|st|sp|sv|skoid|sktid|skt|ske|sks|skv|saoid|suoid|password|pwd|secret|token|"
    r"code|accountkey|sharedaccesskey|sharedaccesssignature|client_secret)=[^&;'\" \t\r\n]*"
)


def redact(text: str) -> str:
    """``text`` with URL user info and secret-looking parameters (SAS ``sig=``, ``AccountKey=``) masked.

    Settings problems are shown in logs and in the HTTP 500 body: a value the app refuses may still be
    a real credential pasted into the wrong setting, so it is never echoed as is.
    """
    return _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}=***", _USERINFO.sub("***@", text))


class SettingsError(ValueError):
    """One or more settings are missing or invalid; the message names each one (secrets redacted)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [redact(p) for p in problems]
        super().__init__("invalid settings:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class StorageSettings:
    """Where the queue and the state tables are: a connection string, or endpoints and an identity."""

    connection_string: str | None = None
    queue_uri: str | None = None
    table_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the app reads, validated."""

    organization_url: OrganizationUrl
    manifest_text: str
    manifest_source: str
    storage: StorageSettings
    client_id: str | None = None
    extra_client_ids: tuple[str, ...] = ()
    development_user: str | None = None
    schedule: str = "0 */15 * * * *"
    settle: timedelta = timedelta(minutes=15)
    full_every: timedelta = timedelta(days=7)
    allow_create_lookup: bool = False
    lookup: LookupSpec = field(default_factory=LookupSpec)
    client: ClientSettings = field(default_factory=ClientSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    lease_ttl: timedelta = timedelta(minutes=30)
    sample_size: int = 200
    sample_min_match: float = DEFAULT_MIN_MATCH
    table_prefix: str = "hydration"
    max_throttle_delay: timedelta = timedelta(hours=1)
    """Cap on the queue delay of a throttled step (the worker clamps ``Retry-After`` to it)."""
    max_throttled_requeues: int = 20
    """Consecutive throttled re-enqueues of one step before its task is Failed."""
    relink: RelinkLimits = field(default_factory=RelinkLimits)
    """How many existing links a pass may change before it is held for approval."""
    http_debug_logs: bool = False

    @property
    def dataverse_url(self) -> str:
        """The organization URL as text, normalised (``https://host[:port]``, no trailing slash)."""
        return str(self.organization_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate the settings; ``SettingsError`` lists every problem at once."""
        reader = _Reader(env)
        settings = reader.settings()
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


class _Reader:
    """Collects problems while reading, so all are reported together."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str:
        value = self.env.get(name)
        if value is None or not value.strip():
            return _DEFAULTS.get(name) or ""
        return value.strip()

    def number(self, name: str, low: float, high: float, *, integer: bool = True) -> float:
        text = self.raw(name)
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            self.problems.append(f"{name}={text!r} is not a {'whole ' if integer else ''}number")
            return float(_DEFAULTS[name] or 0)
        if not low <= value <= high:
            self.problems.append(f"{name}={text!r} must be between {low:g} and {high:g}")
        return value

    def flag(self, name: str) -> bool:
        text = self.raw(name).lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            self.problems.append(f"{name}={text!r} must be true or false")
        return text in ("true", "1", "yes")

    def organization_url(self) -> OrganizationUrl | None:
        url = self.raw("DATAVERSE_URL")
        if not url:
            self.problems.append(
                "DATAVERSE_URL is required: the organization URL, e.g. https://contoso.crm.dynamics.com"
            )
            return None
        try:
            organization = OrganizationUrl.parse(url)
        except InvalidOrganizationUrlError as exc:
            self.problems.append(f"DATAVERSE_URL={url!r}: {exc}")
            return None
        if organization.scheme == "http" and not organization.is_loopback:
            self.problems.append(
                f"DATAVERSE_URL={url!r} must use https (http is allowed for a local emulator only)"
            )
        return organization

    def manifest(self) -> tuple[str, str]:
        value = self.raw("HYDRATION_MANIFEST")
        if not value:
            self.problems.append(
                "HYDRATION_MANIFEST is required: a path to the unification manifest, or the JSON itself"
            )
            return "", ""
        if value.startswith("{"):
            return value, "HYDRATION_MANIFEST (inline JSON)"
        path = Path(value)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            self.problems.append(f"HYDRATION_MANIFEST: cannot read {value!r}: {exc.strerror or exc}")
            return "", value
        except ValueError:  # not UTF-8 text (UnicodeDecodeError), or a path with a NUL in it
            self.problems.append(f"HYDRATION_MANIFEST: {value!r} is not a UTF-8 text file")
            return "", value

    def storage(self) -> StorageSettings:
        queue_uri = self.env.get(f"{STORAGE}__queueServiceUri", "").strip() or None
        table_uri = self.env.get(f"{STORAGE}__tableServiceUri", "").strip() or None
        if queue_uri or table_uri:
            if not (queue_uri and table_uri):
                self.problems.append(
                    f"identity-based storage needs both {STORAGE}__queueServiceUri and "
                    f"{STORAGE}__tableServiceUri"
                )
            for name, uri in (("queueServiceUri", queue_uri), ("tableServiceUri", table_uri)):
                if uri and not _is_https(uri):
                    self.problems.append(f"{STORAGE}__{name}={uri!r} must be an https endpoint")
            credential = self.env.get(f"{STORAGE}__credential", "managedidentity").strip().lower()
            if credential not in ("managedidentity", ""):
                self.problems.append(
                    f"{STORAGE}__credential={credential!r}: only managedidentity is supported"
                )
            client_id = self.env.get(f"{STORAGE}__clientId", "").strip() or None
            return StorageSettings(queue_uri=queue_uri, table_uri=table_uri, client_id=client_id)
        connection = self.raw(STORAGE)
        try:  # the adapters' own parsers: what they accept here, they accept when the app starts
            AzureTaskQueue.from_connection_string(connection, QUEUE_NAME)
            AzureStateTables.from_connection_string(connection)
        except (ValueError, TypeError):
            self.problems.append(
                f"{STORAGE} is not a storage connection string (it needs AccountName and AccountKey, "
                "or endpoints and a SharedAccessSignature, or UseDevelopmentStorage=true)"
            )
        return StorageSettings(connection_string=connection)

    def lookup(self) -> LookupSpec:
        try:
            return LookupSpec(
                schema_name=self.raw("HYDRATION_LOOKUP_SCHEMA_NAME"),
                relationship_name=self.raw("HYDRATION_RELATIONSHIP_NAME"),
                display_name=self.raw("HYDRATION_LOOKUP_DISPLAY_NAME"),
                solution=self.raw("HYDRATION_SOLUTION") or None,
            )
        except InvalidNameError as exc:
            self.problems.append(
                "lookup settings (HYDRATION_LOOKUP_*, HYDRATION_RELATIONSHIP_NAME, HYDRATION_SOLUTION): "
                f"{exc}"
            )
            return LookupSpec()

    def client(self) -> ClientSettings:
        bypass = self.raw("HYDRATION_BYPASS_BUSINESS_LOGIC").replace(" ", "")
        if bypass and bypass not in _BYPASS:
            self.problems.append(
                f"HYDRATION_BYPASS_BUSINESS_LOGIC={bypass!r} must be one of {', '.join(_BYPASS)}"
            )
            bypass = ""
        return ClientSettings(
            bypass_business_logic=bypass or None, suppress_flows=self.flag("HYDRATION_SUPPRESS_FLOWS")
        )

    def link(self) -> LinkSettings:
        page = int(self.number("HYDRATION_PAGE_SIZE", 1, 5000))
        parallel_text = self.raw("HYDRATION_WRITE_PARALLELISM")
        parallelism = None
        if parallel_text:
            parallelism = int(self.number("HYDRATION_WRITE_PARALLELISM", 1, 64))
        stale = self.raw("HYDRATION_STALE_LINKS").lower()
        if stale not in ("clear", "report"):
            self.problems.append(f"HYDRATION_STALE_LINKS={stale!r} must be clear or report")
        step = self.number("HYDRATION_STEP_SECONDS", 10, 1500, integer=False)
        return LinkSettings(
            page_size=page, parallelism=parallelism, clear_stale=stale != "report", step_seconds=step
        )

    def client_ids(self) -> tuple[str | None, tuple[str, ...]]:
        main = self.env.get("AZURE_CLIENT_ID", "").strip() or None
        extra = tuple(x.strip() for x in self.raw("DATAVERSE_EXTRA_CLIENT_IDS").split(",") if x.strip())
        for value in (main, *extra):
            if value is not None and not re.fullmatch(r"[0-9a-fA-F-]{36}", value):
                self.problems.append(
                    f"client id {value!r} is not a GUID (AZURE_CLIENT_ID, DATAVERSE_EXTRA_CLIENT_IDS)"
                )
        return main, extra

    def throttling(self) -> dict[str, Any]:
        delay = self.number("HYDRATION_MAX_THROTTLE_DELAY_SECONDS", 60, 7 * 24 * 3600)
        return {
            "max_throttle_delay": timedelta(seconds=delay),
            "max_throttled_requeues": int(self.number("HYDRATION_MAX_THROTTLED_REQUEUES", 1, 1000)),
        }

    def relink(self) -> RelinkLimits:
        share = self.number("HYDRATION_MAX_RELINK_SHARE", 0, 1, integer=False)
        cap = None
        if self.raw("HYDRATION_MAX_RELINKS"):
            cap = int(self.number("HYDRATION_MAX_RELINKS", 0, 1_000_000_000))
        return RelinkLimits(max_share=share, max_relinks=cap)

    def settings(self) -> Settings:
        organization = self.organization_url()
        manifest_text, manifest_source = self.manifest()
        schedule = self.raw("HYDRATION_SCHEDULE")
        if not _NCRONTAB.fullmatch(schedule):
            self.problems.append(
                f"HYDRATION_SCHEDULE={schedule!r} must be an NCRONTAB expression of six fields, "
                "e.g. 0 */15 * * * *"
            )
        prefix = self.raw("HYDRATION_TABLE_PREFIX")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", prefix):
            self.problems.append(
                f"HYDRATION_TABLE_PREFIX={prefix!r} must be letters and digits, starting with a letter"
            )
        main, extra = self.client_ids()
        loopback = organization is not None and organization.is_loopback
        development_user = self.raw("DATAVERSE_DEVELOPMENT_USER") if loopback else None
        return Settings(
            organization_url=organization or OrganizationUrl("https", "invalid"),  # raised before use
            manifest_text=manifest_text,
            manifest_source=manifest_source,
            storage=self.storage(),
            client_id=main,
            extra_client_ids=extra,
            development_user=development_user,
            schedule=schedule,
            settle=timedelta(minutes=self.number("HYDRATION_SETTLE_MINUTES", 0, 24 * 60)),
            full_every=timedelta(days=self.number("HYDRATION_FULL_PASS_DAYS", 1, 365)),
            allow_create_lookup=self.flag("HYDRATION_ALLOW_CREATE_LOOKUP"),
            lookup=self.lookup(),
            client=self.client(),
            link=self.link(),
            lease_ttl=timedelta(minutes=self.number("HYDRATION_LEASE_MINUTES", 5, 24 * 60)),
            sample_size=int(self.number("HYDRATION_SAMPLE_SIZE", 0, 5000)),
            sample_min_match=self.number("HYDRATION_SAMPLE_MIN_MATCH", *MIN_MATCH_RANGE, integer=False),
            table_prefix=prefix,
            relink=self.relink(),
            http_debug_logs=self.flag("HYDRATION_HTTP_DEBUG_LOGS"),
            **self.throttling(),
        )


def _is_https(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        return parts.scheme == "https" and bool(parts.hostname)
    except ValueError:  # e.g. a bracket that opens no IPv6 address
        return False


AZURE_SDK_REQUEST_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
"""The Azure SDK's request log: at INFO it logs each storage URL, and retry-list URLs name source rows."""


def apply_log_levels(settings: Settings) -> None:
    """Keep request lines (URLs with row keys) out of the logs unless asked for.

    urllib3 logs Dataverse URLs (``In`` filters of row ids) at DEBUG; the Azure SDK logs storage URLs
    (retry-list entities keyed by source row id) at INFO. Both stay quiet unless
    ``HYDRATION_HTTP_DEBUG_LOGS`` is on.
    """
    debug = settings.http_debug_logs
    logging.getLogger("urllib3").setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger(AZURE_SDK_REQUEST_LOGGER).setLevel(logging.INFO if debug else logging.WARNING)


def sample_local_settings() -> dict[str, Any]:
    """The content of ``local.settings.sample.json``: every setting with its default (tests compare)."""
    values = {s.name: s.default or "" for s in SETTINGS if not s.name.startswith(f"{STORAGE}__")}
    values["DATAVERSE_URL"] = "https://contoso.crm.dynamics.com"
    values["HYDRATION_MANIFEST"] = "manifest.json"
    values["AZURE_CLIENT_ID"] = ""
    return {
        "IsEncrypted": False,
        "Values": {"AzureWebJobsStorage": AZURITE, "FUNCTIONS_WORKER_RUNTIME": "python", **values},
    }


def dumps_sample() -> str:
    """``local.settings.sample.json`` as written in the repository."""
    return json.dumps(sample_local_settings(), indent=2) + "\n"
