"""The Function App's settings against ``hydration.settings``.

Nothing the app needs is missing, nothing unknown is set, and every connection is identity-based.
"""

from __future__ import annotations

import dataclasses

import pytest

from hydration.settings import NAMES, SETTINGS, Setting
from tests.infra.bicep import (
    accessor,
    app_settings,
    forbidden_settings,
    is_literal,
    is_ref,
    missing_deployed_settings,
    parse,
    unknown_app_settings,
)

DEFAULTS = {s.name: s.default for s in SETTINGS}


@pytest.fixture
def function() -> dict:
    return parse("app/function.bicep")


@pytest.fixture
def declared(function: dict) -> dict:
    return app_settings(function)


def test_every_deployed_setting_is_provided(declared: dict) -> None:
    assert any(s.deployed for s in SETTINGS)
    assert missing_deployed_settings(SETTINGS, declared) == []


def test_every_app_setting_of_the_app_is_a_setting_it_reads(declared: dict) -> None:
    assert any(k.startswith("HYDRATION_") for k in declared)
    assert unknown_app_settings(declared, NAMES) == []


def test_no_runtime_settings_on_flex_and_no_keys(declared: dict) -> None:
    assert forbidden_settings(declared) == []
    for path in ("main.bicep", "app/function.bicep"):
        text = parse(path)
        assert "FUNCTIONS_WORKER_RUNTIME" not in str(text)
        assert "FUNCTIONS_EXTENSION_VERSION" not in str(text)


def test_a_missing_deployed_setting_is_detected(declared: dict) -> None:
    for name in (
        "DATAVERSE_URL",
        "HYDRATION_MANIFEST",
        "HYDRATION_STORAGE__queueServiceUri",
        "AZURE_CLIENT_ID",
    ):
        broken = {k: v for k, v in declared.items() if k != name}
        assert missing_deployed_settings(SETTINGS, broken) == [name]


def test_an_empty_deployed_setting_is_detected(declared: dict) -> None:
    assert missing_deployed_settings(SETTINGS, {**declared, "DATAVERSE_URL": ""}) == ["DATAVERSE_URL"]


def test_a_newly_deployed_setting_without_a_value_is_detected(declared: dict) -> None:
    new = Setting("HYDRATION_SOMETHING_NEW", None, "a future required setting", True)
    assert missing_deployed_settings((*SETTINGS, new), declared) == ["HYDRATION_SOMETHING_NEW"]


def test_an_unknown_or_misspelt_setting_is_detected(declared: dict) -> None:
    broken = {**declared, "HYDRATION_SHEDULE": "0 */15 * * * *", "DATAVERSE_ULR": "x", "WEBSITE_X": "1"}
    assert unknown_app_settings(broken, NAMES) == ["DATAVERSE_ULR", "HYDRATION_SHEDULE"]


def test_runtime_settings_and_keys_are_detected(declared: dict) -> None:
    broken = {
        **declared,
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "HYDRATION_STORAGE": "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc",
    }
    assert forbidden_settings(broken) == ["FUNCTIONS_WORKER_RUNTIME", "HYDRATION_STORAGE"]


def test_a_mutated_template_loses_its_setting(function: dict) -> None:
    """The reader follows the parsed template: dropping a key from the Bicep's union() is noticed."""
    config = function["resources"]["functionApp__appSettings"]["config"]
    literal = config["properties"]["function"]["parameters"]["arg_2"]
    del literal["HYDRATION_SCHEDULE"]
    assert missing_deployed_settings(SETTINGS, app_settings(function)) == ["HYDRATION_SCHEDULE"]
    assert "HYDRATION_SCHEDULE" in app_settings(parse("app/function.bicep")), "parse() must return copies"


def test_host_storage_is_identity_based(declared: dict) -> None:
    assert is_literal(declared["AzureWebJobsStorage__credential"], "managedidentity")
    assert is_ref(declared["AzureWebJobsStorage__clientId"], "identityClientId")
    for service in ("blob", "queue", "table"):
        uri = declared[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert accessor(uri) == f"storage.properties.primaryEndpoints.{service}"
    assert "AzureWebJobsStorage" not in declared
    assert not any(k.startswith("AzureWebJobsStorage__accountName") for k in declared)


def test_app_storage_is_identity_based(declared: dict) -> None:
    assert is_literal(declared["HYDRATION_STORAGE__credential"], "managedidentity")
    assert is_ref(declared["HYDRATION_STORAGE__clientId"], "identityClientId")
    assert (
        accessor(declared["HYDRATION_STORAGE__queueServiceUri"])
        == "storage.properties.primaryEndpoints.queue"
    )
    assert (
        accessor(declared["HYDRATION_STORAGE__tableServiceUri"])
        == "storage.properties.primaryEndpoints.table"
    )
    assert "HYDRATION_STORAGE" not in declared, "a connection string would override the identity settings"


def test_dataverse_identity_and_parameters(declared: dict) -> None:
    assert is_ref(declared["AZURE_CLIENT_ID"], "identityClientId")
    assert is_ref(declared["DATAVERSE_URL"], "dataverseUrl")
    assert is_ref(declared["HYDRATION_MANIFEST"], "hydrationManifest")
    assert is_ref(declared["HYDRATION_SCHEDULE"], "hydrationSchedule")
    assert is_ref(declared["HYDRATION_TABLE_PREFIX"], "tablePrefix")


def test_application_insights_uses_entra_id(declared: dict) -> None:
    connection = declared["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert accessor(connection) == "applicationInsights.properties.ConnectionString"
    assert is_literal(
        declared["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"],
        "ClientId=${identityClientId};Authorization=AAD",
    )


def test_parameter_defaults_follow_the_app_defaults() -> None:
    main = parse("main.bicep")["parameters"]
    assert main["hydrationSchedule"]["default"] == DEFAULTS["HYDRATION_SCHEDULE"]
    assert main["tablePrefix"]["default"] == DEFAULTS["HYDRATION_TABLE_PREFIX"]
    assert main["dataverseUrl"]["default"] is None, "the organization URL has no default"
    assert main["hydrationManifest"]["default"] is None, "the manifest has no default"


def test_extra_settings_cannot_override_the_fixed_ones(function: dict) -> None:
    """In union(), later arguments win: the extra-settings parameter must come first."""
    config = function["resources"]["functionApp__appSettings"]["config"]
    arguments = list(config["properties"]["function"]["parameters"].values())
    assert is_ref(arguments[0], "additionalAppSettings")
    assert all(isinstance(a, dict) for a in arguments[1:])


def test_setting_dataclass_is_what_the_checks_read() -> None:
    """The checks read ``name`` and ``deployed``; fail loudly if the settings module changes shape."""
    fields = {f.name for f in dataclasses.fields(Setting)}
    assert {"name", "deployed", "default"} <= fields
