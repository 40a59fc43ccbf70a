"""The alert rule on tables that end Failed or Held, against the records the app emits."""

from __future__ import annotations

import re

import pytest

from hydration.log_context import RUN_ID, TABLE
from hydration.telemetry import ALERT_STATUSES, EVENT, STATUS, TASK_ENDED
from tests.infra.bicep import body, condition, is_literal, is_ref, parse, the_resource

RULE = "Microsoft.Insights/scheduledQueryRules"


@pytest.fixture(scope="module")
def alerts() -> dict:
    return parse("app/alerts.bicep")


@pytest.fixture(scope="module")
def rule(alerts: dict) -> dict:
    return body(the_resource(alerts, RULE))


def the_query(rule: dict) -> str:
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    return str(criterion["query"])


def test_a_log_alert_over_application_insights(rule: dict) -> None:
    assert is_literal(rule["kind"], "LogAlert")
    properties = rule["properties"]
    (scope,) = properties["scopes"]
    assert "applicationInsights" in str(scope)
    assert is_literal(properties["enabled"], True)
    assert is_literal(properties["severity"], 1)
    assert is_ref(properties["evaluationFrequency"], "evaluationFrequency")
    assert is_ref(properties["windowSize"], "evaluationFrequency"), "each run reads the span since the last"


def test_the_query_reads_the_task_end_records_the_app_emits(rule: dict) -> None:
    query = the_query(rule)
    assert query.startswith("traces ")
    assert f'customDimensions["{EVENT}"]) == "{TASK_ENDED}"' in query
    statuses = ", ".join(f'"{s}"' for s in ALERT_STATUSES)
    assert f'customDimensions["{STATUS}"]) in ({statuses})' in query
    assert f'table = tostring(customDimensions["{TABLE}"])' in query
    assert f'run_id = tostring(customDimensions["{RUN_ID}"])' in query
    assert set(re.findall(r'customDimensions\["([^"]+)"\]', query)) == {EVENT, STATUS, TABLE, RUN_ID}


def test_it_fires_on_any_failed_or_held_table_once_per_table_and_status(rule: dict) -> None:
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    assert is_literal(criterion["timeAggregation"], "Count")
    assert is_literal(criterion["operator"], "GreaterThan")
    assert is_literal(criterion["threshold"], 0)
    assert [d["name"] for d in criterion["dimensions"]] == ["table", "status"]
    assert all(d["values"] == ["*"] for d in criterion["dimensions"])


def test_the_email_action_group_is_optional_and_an_existing_group_can_be_given(alerts: dict) -> None:
    group = the_resource(alerts, "Microsoft.Insights/actionGroups")
    assert "alertEmail" in str(condition(group))
    (receiver,) = body(group)["properties"]["emailReceivers"]
    assert is_ref(receiver["emailAddress"], "alertEmail")
    assert alerts["parameters"]["alertEmail"]["default"] == ""
    assert alerts["parameters"]["actionGroupId"]["default"] == ""
    groups = str(body(the_resource(alerts, RULE))["properties"]["actions"]["actionGroups"])
    assert "emailGroups" in groups
    assert "givenGroups" in groups


def test_main_deploys_the_alert_on_the_app_s_application_insights() -> None:
    main = parse("main.bicep")
    params = body(main["modules"]["alerts"])["params"]
    assert "monitoring" in str(params["applicationInsightsName"])
    assert is_ref(params["alertEmail"], "alertEmail")
    assert is_ref(params["actionGroupId"], "alertActionGroupId")
