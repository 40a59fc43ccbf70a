"""The resources in ``infra/``: plan and app, storage, monitoring, roles and the optional Event Grid topic."""

from __future__ import annotations

import pytest

from hydration.settings import POISON_QUEUE_NAME, QUEUE_NAME
from hydration.state import StateStore
from hydration.storage.tables import MemoryStateTables
from tests.infra.bicep import (
    accessor,
    body,
    condition,
    is_literal,
    is_ref,
    parse,
    resources_of,
    the_resource,
)

# Built-in role definition ids, the same in every tenant.
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


@pytest.fixture(scope="module")
def main() -> dict:
    return parse("main.bicep")


@pytest.fixture(scope="module")
def function() -> dict:
    return parse("app/function.bicep")


def test_main_deploys_to_a_resource_group(main: dict) -> None:
    assert main["globals"]["scope"]["value"] == "resourceGroup"


def test_flex_consumption_plan(function: dict) -> None:
    plan = body(the_resource(function, "Microsoft.Web/serverfarms"))
    assert is_literal(plan["sku"]["name"], "FC1")
    assert is_literal(plan["sku"]["tier"], "FlexConsumption")
    assert is_literal(plan["properties"]["reserved"], True), "Linux"


def test_function_app_python_311_with_user_assigned_identity(function: dict) -> None:
    site = body(the_resource(function, "Microsoft.Web/sites"))
    assert is_literal(site["kind"], "functionapp,linux")
    assert is_literal(site["identity"]["type"], "UserAssigned")
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"], (
        "keyed by the identity's resource id"
    )
    properties = site["properties"]
    assert is_literal(properties["httpsOnly"], True)
    assert is_literal(properties["siteConfig"]["minTlsVersion"], "1.2")
    assert is_literal(properties["siteConfig"]["ftpsState"], "Disabled")
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert is_ref(config["scaleAndConcurrency"]["maximumInstanceCount"], "maximumInstanceCount")
    assert "azd-service-name" in str(site["tags"])


def test_deployment_package_is_read_with_the_identity(function: dict) -> None:
    storage = body(the_resource(function, "Microsoft.Web/sites"))["properties"]["functionAppConfig"]
    storage = storage["deployment"]["storage"]
    assert is_literal(storage["type"], "blobContainer")
    assert storage["value"] == "${storage.properties.primaryEndpoints.blob}${deploymentContainerName}"
    assert is_literal(storage["authentication"]["type"], "UserAssignedIdentity")
    assert is_ref(storage["authentication"]["userAssignedIdentityResourceId"], "identityId")


def test_maximum_instance_count_is_a_bounded_parameter(main: dict, function: dict) -> None:
    parameter = main["parameters"]["maximumInstanceCount"]
    assert parameter["type"] == "int"
    assert isinstance(parameter["default"], int)
    bounds = {d["type"]: d.get("argument") for d in parameter["decorators"]}
    assert bounds["min_value"] >= 1
    assert bounds["max_value"] <= 1000
    assert parameter["default"] <= bounds["max_value"]
    assert is_ref(body(main["modules"]["function"])["params"]["maximumInstanceCount"], "maximumInstanceCount")


def test_one_user_assigned_identity_feeds_the_app(main: dict) -> None:
    the_resource(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    params = body(main["modules"]["function"])["params"]
    assert accessor(params["identityId"]) == "identity.id"
    assert accessor(params["identityClientId"]) == "identity.properties.clientId"
    rbac = body(main["modules"]["rbac"])
    assert accessor(rbac["params"]["identityPrincipalId"]) == "identity.properties.principalId"
    assert is_ref(body(main["modules"]["function"])["dependsOn"][0], "rbac"), "roles before the host starts"


def test_storage_account_is_identity_only_tls12_https() -> None:
    storage = parse("app/storage.bicep")
    properties = body(the_resource(storage, "Microsoft.Storage/storageAccounts"))["properties"]
    assert is_literal(properties["allowSharedKeyAccess"], False)
    assert is_literal(properties["minimumTlsVersion"], "TLS1_2")
    assert is_literal(properties["supportsHttpsTrafficOnly"], True)
    assert is_literal(properties["allowBlobPublicAccess"], False)
    assert is_literal(properties["defaultToOAuthAuthentication"], True)


def test_storage_holds_the_deployment_container_queues_and_tables(main: dict) -> None:
    storage = parse("app/storage.bicep")
    container = body(the_resource(storage, "Microsoft.Storage/storageAccounts/blobServices/containers"))
    assert is_ref(container["name"], "deploymentContainerName")
    assert is_literal(container["properties"]["publicAccess"], "None")
    queues = the_resource(storage, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert queues["config"]["loop_type"]["detail"]["array_name"] == "queueNames"
    tables = the_resource(storage, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "tableNames"

    params = body(main["modules"]["storage"])["params"]
    queue_names = [main["variables"][str(name)]["value"] for name in params["queueNames"]]
    assert queue_names[0] == QUEUE_NAME
    assert queue_names[1] == "${queueName}-poison"
    assert queue_names[1].replace("${queueName}", queue_names[0]) == POISON_QUEUE_NAME
    assert is_ref(params["tableNames"], "stateTableNames")
    for module in ("storage", "function"):
        passed = body(main["modules"][module])["params"]["deploymentContainerName"]
        assert is_ref(passed, "deploymentContainerName"), "one container name for storage and app"


def test_state_tables_match_the_app(main: dict) -> None:
    prefix = main["parameters"]["tablePrefix"]["default"]
    names = [n.replace("${tablePrefix}", prefix) for n in main["variables"]["stateTableNames"]["value"]]
    store = StateStore(MemoryStateTables(), prefix=prefix)
    expected = [store.runs_table, store.tasks_table, store.checkpoints_table, store.retries_table]
    assert names == expected
    assert expected == ["hydrationruns", "hydrationtasks", "hydrationcheckpoints", "hydrationretries"]


def test_application_insights_on_log_analytics_with_entra_only() -> None:
    monitoring = parse("app/monitoring.bicep")
    the_resource(monitoring, "Microsoft.OperationalInsights/workspaces")
    insights = body(the_resource(monitoring, "Microsoft.Insights/components"))["properties"]
    assert is_literal(insights["DisableLocalAuth"], True)
    assert accessor(insights["WorkspaceResourceId"]) == "logAnalytics.id"


def _assignments(template: dict) -> dict[str, dict]:
    return {name: body(r) | {"if": condition(r)} for name, r in resources_of(template, ASSIGNMENT).items()}


def _role(assignment: dict) -> str:
    role_key = accessor(
        assignment["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    )
    assert role_key is not None
    assert role_key.startswith("roles.")
    return role_key.removeprefix("roles.")


def test_least_privilege_roles_for_the_app_identity() -> None:
    rbac = parse("app/rbac.bicep")
    roles = rbac["variables"]["roles"]["value"]
    assert {ROLE_IDS[v] for v in roles.values()} == set(ROLE_IDS.values()), "only the four known roles"

    granted: dict[str, str] = {}
    for name, assignment in _assignments(rbac).items():
        function = assignment["name"]["function"]
        assert function["type"] == "guid", f"{name}: role assignment names are guid()s"
        assert _role(assignment) == accessor(function["parameters"]["extra_string_2"]).removeprefix("roles.")
        if assignment["if"] is None:
            assert is_ref(assignment["properties"]["principalId"], "identityPrincipalId")
            assert is_literal(assignment["properties"]["principalType"], "ServicePrincipal")
            granted[ROLE_IDS[roles[_role(assignment)]]] = str(assignment["scope"])
    assert granted == {
        "Storage Blob Data Owner": "storage",
        "Storage Queue Data Contributor": "storage",
        "Storage Table Data Contributor": "storage",
        "Monitoring Metrics Publisher": "applicationInsights",
    }


def test_operator_roles_are_optional() -> None:
    rbac = parse("app/rbac.bicep")
    optional = {n: a for n, a in _assignments(rbac).items() if a["if"] is not None}
    assert optional, "operator roles exist"
    for assignment in optional.values():
        assert is_ref(assignment["properties"]["principalId"], "operatorPrincipalId")
        assert "operatorPrincipalId" in str(assignment["if"])
    assert rbac["parameters"]["operatorPrincipalId"]["default"] == ""


def test_event_grid_topic_is_optional_and_identity_only(main: dict) -> None:
    module = main["modules"]["eventGrid"]
    assert is_ref(condition(module), "createEventGridSubscription")
    assert main["parameters"]["createEventGridSubscription"]["default"] is False
    output = main["outputs"]["EVENT_GRID_TOPIC_ID"]["value"]["operator"]
    assert is_ref(output["operands"]["condition"], "createEventGridSubscription")

    topic = body(the_resource(parse("app/eventgrid.bicep"), "Microsoft.EventGrid/topics"))["properties"]
    assert is_literal(topic["disableLocalAuth"], True)
    assert is_literal(topic["inputSchema"], "EventGridSchema")


def test_outputs_the_hook_and_the_docs_rely_on(main: dict) -> None:
    for name in (
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_ID",
        "AZURE_MANAGED_IDENTITY_CLIENT_ID",
        "EVENT_GRID_TOPIC_ID",
        "AZURE_STORAGE_ACCOUNT_NAME",
    ):
        assert name in main["outputs"]
    assert (
        accessor(main["outputs"]["AZURE_MANAGED_IDENTITY_CLIENT_ID"]["value"])
        == "identity.properties.clientId"
    )
