"""Settings that never echo a secret, never crash on a malformed value, and the throttling and log caps."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hydration.dataverse.organization_url import OrganizationUrl
from hydration.settings import (
    AZURE_SDK_REQUEST_LOGGER,
    Settings,
    SettingsError,
    apply_log_levels,
    redact,
)

BASE = {"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "HYDRATION_MANIFEST": json.dumps({"version": 1})}


def problems(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, **env})
    return caught.value.problems


# -- secrets are never echoed ----------------------------------------------------------------------


def test_a_password_in_the_organization_url_is_not_echoed() -> None:
    (problem,) = problems(DATAVERSE_URL="https://admin:hunter2@contoso.crm.dynamics.com")
    assert "DATAVERSE_URL" in problem
    assert "hunter2" not in problem
    assert "admin" not in problem


def test_a_sas_signature_in_a_storage_endpoint_is_not_echoed() -> None:
    sas = "https://acct.queue.core.windows.net/?sv=2022-11-02&ss=q&sig=S3CRET%2Fsignature%3D"
    found = problems(HYDRATION_STORAGE__queueServiceUri=sas.replace("https", "http"))
    text = "\n".join(found)
    assert "queueServiceUri" in text
    assert "S3CRET" not in text
    assert "sig=***" in text


def test_the_message_of_the_error_is_redacted_too() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, "DATAVERSE_URL": "http://u:pw@10.0.0.1/?sig=abc"})
    assert "pw@" not in str(caught.value)
    assert "abc" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'https://u:p@host/x'", "'https://***@host/x'"),
        ("AccountName=a;AccountKey=c2VjcmV0;", "AccountName=a;AccountKey=***;"),
        ("x?sv=1&sig=abc&se=2030", "x?sv=***&sig=***&se=***"),
        ("SharedAccessSignature=sv=1&sig=abc", "SharedAccessSignature=***&sig=***"),
        (
            "HYDRATION_PAGE_SIZE='0' must be between 1 and 5000",
            "HYDRATION_PAGE_SIZE='0' must be between 1 and 5000",
        ),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


# -- malformed values are settings errors, not crashes --------------------------------------------


@pytest.mark.parametrize(
    "connection",
    ["AccountName=x", "a=b;c", "=;=", "foo=bar", "BlobEndpoint=https://x;SharedAccessSignature=sig=abc"],
)
def test_a_malformed_connection_string_is_a_settings_error(connection: str) -> None:
    (problem,) = problems(HYDRATION_STORAGE=connection)
    assert "HYDRATION_STORAGE is not a storage connection string" in problem
    assert "sig=abc" not in problem


def test_a_well_formed_connection_string_is_accepted() -> None:
    connection = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    )
    assert (
        Settings.from_env({**BASE, "HYDRATION_STORAGE": connection}).storage.connection_string == connection
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATAVERSE_URL", "https://contoso[.crm.dynamics.com"),
        ("DATAVERSE_URL", "https://[::1"),
        ("HYDRATION_STORAGE__queueServiceUri", "https://acct[.queue.core.windows.net"),
    ],
)
def test_a_url_that_does_not_split_is_a_settings_error_not_a_crash(name: str, value: str) -> None:
    env = {name: value}
    if name.startswith("HYDRATION_STORAGE__"):
        env["HYDRATION_STORAGE__tableServiceUri"] = "https://acct.table.core.windows.net"
    (problem,) = problems(**env)
    assert name in problem


def test_a_manifest_file_that_is_not_text_is_a_settings_error(tmp_path: Path) -> None:
    binary = tmp_path / "manifest.json"
    binary.write_bytes(b"\xff\xfe{\x00")
    (problem,) = problems(HYDRATION_MANIFEST=str(binary))
    assert "not a UTF-8 text file" in problem


def test_every_problem_is_still_reported_with_an_invalid_organization_url() -> None:
    found = problems(DATAVERSE_URL="ftp://x", HYDRATION_PAGE_SIZE="0", HYDRATION_STORAGE="a=b;c")
    assert len(found) == 3


# -- the organization URL is one value -------------------------------------------------------------


def test_the_organization_url_is_normalised_once() -> None:
    settings = Settings.from_env({**BASE, "DATAVERSE_URL": "HTTPS://Contoso.CRM.dynamics.com:443/"})
    assert settings.organization_url == OrganizationUrl.parse("https://contoso.crm.dynamics.com")
    assert settings.dataverse_url == "https://contoso.crm.dynamics.com"


# -- throttling caps -------------------------------------------------------------------------------


def test_throttling_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_throttle_delay == timedelta(hours=1)
    assert settings.max_throttled_requeues == 20


def test_throttling_settings_are_read() -> None:
    settings = Settings.from_env(
        {**BASE, "HYDRATION_MAX_THROTTLE_DELAY_SECONDS": "604800", "HYDRATION_MAX_THROTTLED_REQUEUES": "3"}
    )
    assert settings.max_throttle_delay == timedelta(days=7)
    assert settings.max_throttled_requeues == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HYDRATION_MAX_THROTTLE_DELAY_SECONDS", "604801"),
        ("HYDRATION_MAX_THROTTLE_DELAY_SECONDS", "59"),
        ("HYDRATION_MAX_THROTTLE_DELAY_SECONDS", "an hour"),
        ("HYDRATION_MAX_THROTTLED_REQUEUES", "0"),
        ("HYDRATION_MAX_THROTTLED_REQUEUES", "1001"),
        ("HYDRATION_MAX_THROTTLED_REQUEUES", "2.5"),
    ],
)
def test_throttling_settings_are_validated(name: str, value: str) -> None:
    (problem,) = problems(**{name: value})
    assert name in problem


# -- transport logs --------------------------------------------------------------------------------


@pytest.fixture
def urllib3_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("urllib3")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_urllib3_stays_at_info_unless_asked(urllib3_logger: logging.Logger) -> None:
    urllib3_logger.setLevel(logging.NOTSET)  # would inherit a DEBUG root
    sdk_requests = logging.getLogger(AZURE_SDK_REQUEST_LOGGER)
    apply_log_levels(Settings.from_env(BASE))
    assert urllib3_logger.getEffectiveLevel() == logging.INFO
    assert sdk_requests.getEffectiveLevel() == logging.WARNING
    apply_log_levels(Settings.from_env({**BASE, "HYDRATION_HTTP_DEBUG_LOGS": "true"}))
    assert urllib3_logger.getEffectiveLevel() == logging.DEBUG
    assert sdk_requests.getEffectiveLevel() == logging.INFO


SECRETS = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="&;'\" \t\n\r\x0b\x0c/@"), min_size=6
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    SECRETS, st.sampled_from(["sig", "SIG", "AccountKey", "SharedAccessSignature", "password", "se", "token"])
)
def test_a_secret_parameter_never_survives_redaction(secret: str, name: str) -> None:
    for template in (
        "HYDRATION_STORAGE__queueServiceUri='https://a.queue.core.windows.net/?sv=1&{name}={secret}&x=1'",
        "DefaultEndpointsProtocol=https;{name}={secret};EndpointSuffix=core.windows.net",
    ):
        # a "secret" that is part of the text around it (say "HYDRAT") would be found there, not leaked
        assume(secret not in template.format(name=name, secret=""))
        assert secret not in redact(template.format(name=name, secret=secret))


@settings(max_examples=200, deadline=None, database=None)
@given(SECRETS)
def test_a_password_in_a_url_never_survives_redaction(secret: str) -> None:
    assert secret not in redact(f"DATAVERSE_URL='https://admin:{secret}@contoso.crm.dynamics.com'")
    (problem,) = problems(DATAVERSE_URL=f"https://admin:{secret}@contoso.crm.dynamics.com")
    assert secret not in problem
