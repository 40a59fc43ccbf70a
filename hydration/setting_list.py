"""Every setting the app reads: its name, its default and what it does, in one list.

``SETTINGS`` is the single source of the settings' names: ``settings`` reads exactly these, and the
deployment (``infra/``), ``local.settings.sample.json`` and the README's Settings table are checked
against it by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sample import DEFAULT_MIN_MATCH

AZURITE = "UseDevelopmentStorage=true"
DEVELOPMENT_USER = "hydration-app"
STORAGE = "HYDRATION_STORAGE"


@dataclass(frozen=True)
class Setting:
    """One setting the app reads."""

    name: str
    default: str | None
    doc: str
    deployed: bool = False
    """The deployment must provide it (required, or needed for identity-based access in Azure)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("DATAVERSE_URL", None, "The organization URL, e.g. https://contoso.crm.dynamics.com.", True),
    Setting(
        "HYDRATION_MANIFEST",
        None,
        "The unification manifest: a file path or the JSON itself (schema: hydration/manifest.schema.json).",
        True,
    ),
    Setting(
        STORAGE,
        AZURITE,
        "Connection string of the storage account holding the job queue and state tables (locally "
        "Azurite). In Azure leave it unset and give the HYDRATION_STORAGE__* identity settings.",
    ),
    Setting(f"{STORAGE}__queueServiceUri", None, "Identity-based storage: the queue endpoint.", True),
    Setting(f"{STORAGE}__tableServiceUri", None, "Identity-based storage: the table endpoint.", True),
    Setting(f"{STORAGE}__credential", None, "Identity-based storage: `managedidentity`.", True),
    Setting(
        f"{STORAGE}__clientId", None, "Identity-based storage: the user-assigned identity's client id.", True
    ),
    Setting(
        "AZURE_CLIENT_ID",
        None,
        "Client id of the user-assigned managed identity that is the Dataverse application user.",
        True,
    ),
    Setting(
        "DATAVERSE_EXTRA_CLIENT_IDS",
        "",
        "Comma-separated client ids of further user-assigned identities, each its own application user "
        "with the same security role; writes are spread over all of them (each has its own service "
        "protection limits), reads stay with the main identity.",
    ),
    Setting(
        "DATAVERSE_DEVELOPMENT_USER",
        DEVELOPMENT_USER,
        "Local emulator only (a loopback DATAVERSE_URL): the user name sent as a development token.",
    ),
    Setting(
        "HYDRATION_SCHEDULE",
        "0 */15 * * * *",
        "NCRONTAB schedule of the timer that checks for settled mapping changes.",
        True,
    ),
    Setting("HYDRATION_SETTLE_MINUTES", "15", "Mapping changes younger than this wait for the next pass."),
    Setting("HYDRATION_FULL_PASS_DAYS", "7", "A full pass (with reconcile) is owed after this many days."),
    Setting("HYDRATION_STALE_LINKS", "clear", "`clear` stale links in a full pass, or only `report` them."),
    Setting(
        "HYDRATION_ALLOW_CREATE_LOOKUP",
        "false",
        "Let the worker create a missing lookup column (needs customization privileges; else run "
        "`python -m hydration provision` as an admin).",
    ),
    Setting(
        "HYDRATION_LOOKUP_SCHEMA_NAME", "msdynci_lookupfield_customerprofile", "The lookup's schema name."
    ),
    Setting(
        "HYDRATION_RELATIONSHIP_NAME",
        "msdynci_customerprofile_{table}",
        "Schema name of a created relationship; {table} is the source table's logical name.",
    ),
    Setting("HYDRATION_LOOKUP_DISPLAY_NAME", "Customer Profile", "Display name of a created lookup."),
    Setting("HYDRATION_SOLUTION", "", "Unique name of the solution a created lookup is added to."),
    Setting(
        "HYDRATION_BYPASS_BUSINESS_LOGIC",
        "",
        "`CustomSync`, `CustomAsync` or `CustomSync,CustomAsync`: skip custom plug-ins on the writes "
        "(needs the prvBypassCustomBusinessLogic privilege).",
    ),
    Setting("HYDRATION_SUPPRESS_FLOWS", "false", "Do not trigger Power Automate flows on the writes."),
    Setting("HYDRATION_PAGE_SIZE", "5000", "Mapping rows per step (1 to 5000)."),
    Setting(
        "HYDRATION_STEP_SECONDS",
        "120",
        "A queue message starts no new page after this long (keep it well inside functionTimeout).",
    ),
    Setting("HYDRATION_WRITE_PARALLELISM", "", "Concurrent write requests; empty follows x-ms-dop-hint."),
    Setting("HYDRATION_LEASE_MINUTES", "30", "A table's lease lapses after this long without progress."),
    Setting("HYDRATION_SAMPLE_SIZE", "200", "Mapping rows sampled per table before it is enqueued (0: off)."),
    Setting(
        "HYDRATION_SAMPLE_MIN_MATCH",
        str(DEFAULT_MIN_MATCH),
        "Share of sampled mapping rows that must name an existing source row, else the table is Skipped "
        "(0.01 to 0.5; deleted rows do not stop a table, a wrong key or organization matches nothing).",
    ),
    Setting("HYDRATION_TABLE_PREFIX", "hydration", "Prefix of the state tables' names."),
    Setting(
        "HYDRATION_MAX_THROTTLE_DELAY_SECONDS",
        "3600",
        "Longest a throttled step waits in the queue before it is tried again, whatever Retry-After "
        "says (60 to 604800; the queue's own limit is 7 days).",
    ),
    Setting(
        "HYDRATION_MAX_THROTTLED_REQUEUES",
        "20",
        "A step throttled this many times in a row (each re-enqueued with a delay) fails its task "
        "with the reason; the next run resumes it (1 to 1000).",
    ),
    Setting(
        "HYDRATION_MAX_RELINK_SHARE",
        "0.2",
        "A pass that would change (overwrite with another profile, or clear) more than this share of a "
        "table's existing links writes nothing and is Held until approved (0 to 1; 1 turns the share "
        "rule off). First links never count.",
    ),
    Setting(
        "HYDRATION_MAX_RELINKS",
        "",
        "An absolute cap on the existing links one pass may change before it is Held (0 to "
        "1000000000); empty: no cap.",
    ),
    Setting(
        "HYDRATION_HTTP_DEBUG_LOGS",
        "false",
        "Let the HTTP library (urllib3) log at DEBUG and the Azure SDK log its requests at INFO: request "
        "lines, whose URLs carry row keys (Dataverse filters, retry-list keys). Off, urllib3 logs at INFO "
        "and the Azure SDK's request log at WARNING and above only, whatever the host's log level.",
    ),
)
