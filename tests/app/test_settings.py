"""Settings: defaults, validation that names every problem, and the files that document them."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from hydration.settings import AZURITE, NAMES, SETTINGS, Settings, SettingsError, dumps_sample

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.dumps({"version": 1})
BASE = {"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "HYDRATION_MANIFEST": MANIFEST}


def test_defaults_with_only_the_required_settings() -> None:
    settings = Settings.from_env(BASE)
    assert settings.dataverse_url == "https://contoso.crm.dynamics.com"
    assert settings.manifest_text == MANIFEST
    assert settings.storage.connection_string == AZURITE
    assert settings.settle == timedelta(minutes=15)
    assert settings.full_every == timedelta(days=7)
    assert settings.lease_ttl == timedelta(minutes=30)
    assert settings.link.clear_stale is True
    assert settings.allow_create_lookup is False
    assert settings.link.page_size == 5000
    assert settings.link.parallelism is None
    assert settings.development_user is None  # never a development token for a real organization
    assert settings.client.bypass_business_logic is None
    assert settings.lookup.schema_name == "msdynci_lookupfield_customerprofile"


def test_missing_required_settings_are_all_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({})
    text = str(caught.value)
    assert "DATAVERSE_URL is required" in text
    assert "HYDRATION_MANIFEST is required" in text


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATAVERSE_URL", "http://contoso.crm.dynamics.com", "must use https"),
        ("DATAVERSE_URL", "https://contoso.crm.dynamics.com/api/data/v9.2", "organization URL"),
        ("HYDRATION_SCHEDULE", "*/5 * * * *", "six fields"),
        ("HYDRATION_SETTLE_MINUTES", "soon", "not a whole number"),
        ("HYDRATION_PAGE_SIZE", "6000", "between 1 and 5000"),
        ("HYDRATION_STALE_LINKS", "delete", "clear or report"),
        ("HYDRATION_ALLOW_CREATE_LOOKUP", "maybe", "true or false"),
        ("HYDRATION_BYPASS_BUSINESS_LOGIC", "Everything", "must be one of"),
        ("HYDRATION_LOOKUP_SCHEMA_NAME", "bad name; drop", "lookup settings"),
        ("HYDRATION_TABLE_PREFIX", "hy-dration", "letters and digits"),
        ("AZURE_CLIENT_ID", "not-a-guid", "is not a GUID"),
        ("HYDRATION_SAMPLE_SIZE", "5001", "between 0 and 5000"),
        ("HYDRATION_SAMPLE_MIN_MATCH", "2", "between 0.01 and 0.5"),
        ("HYDRATION_SAMPLE_MIN_MATCH", "0", "between 0.01 and 0.5"),
        ("HYDRATION_SAMPLE_MIN_MATCH", "0.9", "between 0.01 and 0.5"),
        ("HYDRATION_SAMPLE_MIN_MATCH", "nan", "between 0.01 and 0.5"),
        ("HYDRATION_STORAGE", "nonsense", "not a storage connection string"),
    ],
)
def test_invalid_values_say_which_setting_and_why(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, name: value})
    assert len(caught.value.problems) == 1
    assert expected in caught.value.problems[0]
    assert name.split("_")[0] in caught.value.problems[0] or "client id" in caught.value.problems[0]


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, "HYDRATION_PAGE_SIZE": "0", "HYDRATION_LEASE_MINUTES": "x"})
    assert len(caught.value.problems) == 2


def test_a_connection_string_is_never_echoed_in_an_error() -> None:
    secret = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0"
    settings = Settings.from_env({**BASE, "HYDRATION_STORAGE": secret})
    assert settings.storage.connection_string == secret
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, "HYDRATION_STORAGE": secret, "HYDRATION_PAGE_SIZE": "0"})
    assert "c2VjcmV0" not in str(caught.value)


def test_identity_based_storage() -> None:
    env = {
        **BASE,
        "HYDRATION_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net",
        "HYDRATION_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
        "HYDRATION_STORAGE__credential": "managedidentity",
        "HYDRATION_STORAGE__clientId": "00000000-0000-0000-0000-000000000001",
    }
    storage = Settings.from_env(env).storage
    assert storage.connection_string is None
    assert storage.queue_uri == "https://acct.queue.core.windows.net"
    assert storage.client_id == "00000000-0000-0000-0000-000000000001"
    del env["HYDRATION_STORAGE__tableServiceUri"]
    with pytest.raises(SettingsError, match="needs both"):
        Settings.from_env(env)


def test_a_loopback_organization_gets_the_development_user(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(MANIFEST)
    settings = Settings.from_env({"DATAVERSE_URL": "http://127.0.0.1:8765", "HYDRATION_MANIFEST": str(path)})
    assert settings.development_user == "hydration-app"
    assert settings.manifest_text == MANIFEST
    assert settings.manifest_source == str(path)


def test_an_unreadable_manifest_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.from_env({**BASE, "HYDRATION_MANIFEST": str(tmp_path / "missing.json")})


def test_local_settings_sample_lists_every_setting_with_its_default() -> None:
    assert (ROOT / "local.settings.sample.json").read_text() == dumps_sample()
    values = json.loads(dumps_sample())["Values"]
    for setting in SETTINGS:
        if not setting.name.startswith("HYDRATION_STORAGE__"):
            assert setting.name in values


def test_the_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`((?:HYDRATION|DATAVERSE|AZURE)_[A-Za-z_]+)`", readme))
    missing = {s.name for s in SETTINGS} - documented
    assert not missing, f"README does not document {sorted(missing)}"
    unknown = {n for n in documented if n.startswith(("HYDRATION_", "DATAVERSE_"))} - NAMES
    assert not unknown, f"README documents settings the app does not read: {sorted(unknown)}"


def test_the_relink_guard_defaults_to_a_fifth_of_the_links_and_no_cap() -> None:
    limits = Settings.from_env(BASE).relink
    assert (limits.max_share, limits.max_relinks, limits.enabled) == (0.2, None, True)
    limits = Settings.from_env(
        {**BASE, "HYDRATION_MAX_RELINK_SHARE": "1", "HYDRATION_MAX_RELINKS": " "}
    ).relink
    assert (limits.max_share, limits.max_relinks, limits.enabled) == (1.0, None, False)
    limits = Settings.from_env(
        {**BASE, "HYDRATION_MAX_RELINK_SHARE": "0.05", "HYDRATION_MAX_RELINKS": "500"}
    ).relink
    assert (limits.max_share, limits.max_relinks) == (0.05, 500)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("HYDRATION_MAX_RELINK_SHARE", "1.5", "HYDRATION_MAX_RELINK_SHARE='1.5' must be between 0 and 1"),
        ("HYDRATION_MAX_RELINK_SHARE", "-0.1", "must be between 0 and 1"),
        ("HYDRATION_MAX_RELINK_SHARE", "20%", "HYDRATION_MAX_RELINK_SHARE='20%' is not a number"),
        ("HYDRATION_MAX_RELINK_SHARE", "nan", "must be between 0 and 1"),
        ("HYDRATION_MAX_RELINKS", "-1", "HYDRATION_MAX_RELINKS='-1' must be between 0 and 1e+09"),
        ("HYDRATION_MAX_RELINKS", "ten", "HYDRATION_MAX_RELINKS='ten' is not a whole number"),
        ("HYDRATION_MAX_RELINKS", "2.5", "is not a whole number"),
    ],
)
def test_a_bad_relink_limit_is_a_settings_error_naming_it(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, name: value})
    assert any(problem in p for p in caught.value.problems), caught.value.problems
