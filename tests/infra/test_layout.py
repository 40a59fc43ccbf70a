"""The azd layout: files, azure.yaml, the parameters file and how the Bicep files fit together."""

from __future__ import annotations

import json
import re

import pytest

from hydration.settings import SETTINGS
from tests.infra.bicep import (
    INFRA,
    ROOT,
    body,
    module_problems,
    parse,
    unused_parameters,
)

BICEP_FILES = sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))
DEFAULTS = {s.name: s.default for s in SETTINGS}


def test_layout_files_exist() -> None:
    for path in (
        "azure.yaml",
        "infra/main.bicep",
        "infra/main.parameters.json",
        "infra/app/rbac.bicep",
        "infra/app/function.bicep",
        "infra/app/storage.bicep",
        "infra/app/monitoring.bicep",
        "infra/app/alerts.bicep",
        "infra/hooks/postdeploy.sh",
        "infra/hooks/postdeploy.ps1",
        ".github/workflows/arm.yml",
        "docs/deployment.md",
    ):
        assert (ROOT / path).is_file(), path


def test_azure_yaml_deploys_this_app_as_a_function() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    services = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", text, re.M)
    assert services, "one service under services:"
    service, settings = services.group(1), services.group(2)
    assert re.search(r"^    host: function$", settings, re.M)
    assert re.search(r"^    language: python$", settings, re.M)
    assert re.search(r"^    project: \.$", settings, re.M)
    site = body(parse("app/function.bicep")["resources"]["functionApp"])
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": service}
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.M)


def test_azure_yaml_hooks_point_at_existing_scripts() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^hooks:\n(?:  #.*\n)?  postdeploy:\n", text, re.M)
    scripts = re.findall(r"run: \./(\S+)", text)
    assert sorted(scripts) == ["infra/hooks/postdeploy.ps1", "infra/hooks/postdeploy.sh"]
    for script in scripts:
        assert (ROOT / script).is_file(), script


@pytest.fixture(scope="module")
def parameters_file() -> dict:
    return json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]


def test_parameters_file_matches_main(parameters_file: dict) -> None:
    declared = parse("main.bicep")["parameters"]
    assert set(parameters_file) <= set(declared), set(parameters_file) - set(declared)
    required = {name for name, p in declared.items() if p["default"] is None}
    assert required <= set(parameters_file), required - set(parameters_file)


def test_parameters_come_from_the_azd_environment(parameters_file: dict) -> None:
    variables = {name: p["value"] for name, p in parameters_file.items()}
    assert variables["dataverseUrl"] == "${DATAVERSE_URL}"
    assert variables["hydrationManifest"] == "${HYDRATION_MANIFEST}"
    assert variables["createEventGridSubscription"] == "${CREATE_EVENT_GRID_SUBSCRIPTION=false}"
    assert (
        variables["hydrationSchedule"] == "${HYDRATION_SCHEDULE=" + str(DEFAULTS["HYDRATION_SCHEDULE"]) + "}"
    )
    main = parse("main.bicep")["parameters"]
    assert (
        variables["maximumInstanceCount"]
        == "${MAXIMUM_INSTANCE_COUNT=" + str(main["maximumInstanceCount"]["default"]) + "}"
    )
    for value in variables.values():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", value), f"{value}: one azd environment value"


@pytest.mark.parametrize("path", BICEP_FILES)
def test_every_parameter_is_used(path: str) -> None:
    assert unused_parameters(parse(path)) == []


def test_an_unused_parameter_is_detected() -> None:
    template = parse("app/monitoring.bicep")
    template["parameters"]["forgotten"] = {"decorators": [], "type": "string", "default": None}
    assert unused_parameters(template) == ["forgotten"]


def test_modules_exist_and_their_parameters_and_outputs_match() -> None:
    main = parse("main.bicep")
    assert main["modules"], "main.bicep is split into modules"
    for symbol, module in main["modules"].items():
        assert module["type"] == "local"
        path = module["detail"]["path"]
        assert (INFRA / path).is_file(), path
        assert module_problems(main, symbol, parse(path)) == []


def test_a_wrong_module_call_is_detected() -> None:
    main = parse("main.bicep")
    params = body(main["modules"]["storage"])["params"]
    params["tableName"] = params.pop("tableNames")
    problems = module_problems(main, "storage", parse("app/storage.bicep"))
    assert problems == [
        "storage: passes undeclared parameter tableName",
        "storage: omits required parameter tableNames",
    ]
    module = parse("app/function.bicep")
    del module["outputs"]["id"]
    assert module_problems(parse("main.bicep"), "function", module) == ["function: reads missing output id"]


def test_no_keys_or_secrets_in_the_deployment() -> None:
    pattern = re.compile(r"listKeys\(|AccountKey=|SharedAccessSignature|connectionStrings|@secure\(\)", re.I)
    for path in [*INFRA.rglob("*.bicep"), INFRA / "main.parameters.json", ROOT / "azure.yaml"]:
        text = path.read_text(encoding="utf-8")
        assert not pattern.search(text), path


def test_docs_name_every_parameter_and_environment_value(parameters_file: dict) -> None:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for name in parse("main.bicep")["parameters"]:
        assert f"`{name}`" in text, name
    for parameter in parameters_file.values():
        variable = re.match(r"\$\{([A-Z_]+)", parameter["value"])
        assert variable, parameter
        assert f"`{variable.group(1)}`" in text, variable.group(1)


def test_arm_workflow_lints_builds_and_publishes() -> None:
    text = (ROOT / ".github" / "workflows" / "arm.yml").read_text(encoding="utf-8")
    assert "az bicep lint --file infra/main.bicep" in text
    assert "az bicep build --file infra/main.bicep --outfile infra/azuredeploy.json" in text
    assert "actions/upload-artifact@" in text
    assert "git add infra/azuredeploy.json" in text
    assert re.search(r"^permissions:\n  contents: read$", text, re.M), "read-only unless a job asks for more"
