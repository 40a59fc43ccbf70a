"""The functions' bindings (``function_app.py``) against the deployment.

Every ``%SETTING%`` and every connection a trigger names is provided; every queue a trigger reads is created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from hydration.handlers import EVENT_TYPE
from hydration.settings import POISON_QUEUE_NAME, QUEUE_NAME
from tests.functions import app_functions
from tests.infra.bicep import ROOT, app_settings, parse

EXPECTED_FUNCTIONS = {
    "timer_tick",
    "unification_completed",
    "start_runs",
    "approve_run",
    "status",
    "worker",
    "poison",
}


def binding_problems(bindings: Mapping[str, list[dict[str, Any]]], declared: Mapping[str, Any]) -> list[str]:
    """What the deployment lacks for these bindings: settings named ``%X%``, identity connections, queues."""
    problems = []
    for function, items in sorted(bindings.items()):
        for binding in items:
            for value in binding.values():
                for name in re.findall(r"%([^%]+)%", value) if isinstance(value, str) else []:
                    if name not in declared:
                        problems.append(f"{function}: setting {name} is not deployed")
            if binding["type"] == "queueTrigger":
                connection = binding.get("connection") or "AzureWebJobsStorage"
                for suffix in ("queueServiceUri", "credential", "clientId"):
                    if f"{connection}__{suffix}" not in declared:
                        problems.append(
                            f"{function}: connection setting {connection}__{suffix} is not deployed"
                        )
                if binding["queueName"] not in (QUEUE_NAME, POISON_QUEUE_NAME):
                    problems.append(f"{function}: queue {binding['queueName']} is not created")
    return problems


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads(f.get_function_json())["bindings"] for name, f in app_functions().items()}


def test_the_functions_are_the_ones_the_deployment_expects(bindings: dict) -> None:
    assert set(bindings) == EXPECTED_FUNCTIONS


def test_bindings_find_their_settings_connections_and_queues(bindings: dict) -> None:
    declared = app_settings(parse("app/function.bicep"))
    assert binding_problems(bindings, declared) == []


def test_a_binding_the_deployment_lacks_is_detected(bindings: dict) -> None:
    declared = app_settings(parse("app/function.bicep"))
    del declared["HYDRATION_SCHEDULE"]
    del declared["HYDRATION_STORAGE__queueServiceUri"]
    broken = {
        **bindings,
        "extra": [{"type": "queueTrigger", "queueName": "other", "connection": "HYDRATION_STORAGE"}],
    }
    assert binding_problems(broken, declared) == [
        "extra: connection setting HYDRATION_STORAGE__queueServiceUri is not deployed",
        "extra: queue other is not created",
        "poison: connection setting HYDRATION_STORAGE__queueServiceUri is not deployed",
        "timer_tick: setting HYDRATION_SCHEDULE is not deployed",
        "worker: connection setting HYDRATION_STORAGE__queueServiceUri is not deployed",
    ]


def test_the_hooks_subscribe_the_event_grid_function(bindings: dict) -> None:
    event_functions = [name for name, items in bindings.items() if items[0]["type"] == "eventGridTrigger"]
    assert event_functions == ["unification_completed"]
    for hook in ("postdeploy.sh", "postdeploy.ps1"):
        text = (ROOT / "infra" / "hooks" / hook).read_text(encoding="utf-8")
        assert f"/functions/{event_functions[0]}" in text, hook
        assert "--endpoint-type azurefunction" in text, hook
        assert f"--included-event-types {EVENT_TYPE}" in text, hook
