"""Plug-in steps, SDK messages and cloud flows; RetrieveUserPrivileges and RetrieveTotalRecordCount."""

from __future__ import annotations

import json

import pytest

from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi
from tests.conftest import CONTACTS, LEADS

STEPS = (
    "sdkmessageprocessingsteps?$select=name,stage,mode,filteringattributes,statecode,customizationlevel"
    "&$filter=sdkmessageid/name eq 'Update' and sdkmessagefilterid/primaryobjecttypecode eq 'contact'"
)


def test_the_seed_has_the_messages_and_a_microsoft_update_step_per_source_table(api: WebApi) -> None:
    names = {m["name"] for m in api.get("sdkmessages?$select=name").json()["value"]}
    assert {"Create", "Update", "Delete", "UpdateMultiple"} <= names
    (step,) = api.get(STEPS).json()["value"]
    assert (step["stage"], step["mode"], step["statecode"], step["customizationlevel"]) == (40, 0, 0, 0)
    assert step["filteringattributes"] is None


def test_registered_steps_are_found_by_message_and_table(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.register_step(name="A", table="contact", stage=20, filteringattributes="firstname")
    emulator.register_step(name="B", table="contact", stage=40, mode=1, enabled=False)
    emulator.register_step(name="C", table="lead")
    emulator.register_step(name="D", table="contact", message="Create")
    rows = {r["name"]: r for r in api.get(STEPS).json()["value"]}
    assert set(rows) == {"A", "B", "Microsoft.Crm.ObjectModel.ContactService: Update of contact"}
    assert (rows["A"]["stage"], rows["A"]["filteringattributes"], rows["A"]["customizationlevel"]) == (
        20,
        "firstname",
        1,
    )
    assert (rows["B"]["mode"], rows["B"]["statecode"]) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [{"stage": 30}, {"mode": 1, "stage": 20}, {"table": "account"}, {"message": "Merge"}, {"enabled": "yes"}],
)
def test_bad_step_registrations_are_refused(emulator: EmulatorClient, body: dict[str, object]) -> None:
    with pytest.raises(ControlCallError) as caught:
        emulator.register_step(**body)
    assert caught.value.status == 400


def test_flows_are_modern_flows_with_a_dataverse_trigger(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.register_flow(name="On", table="lead", message=4, filteringattributes="companyname")
    emulator.register_flow(name="Off", table="lead", activated=False)
    rows = api.get("workflows?$select=name,clientdata&$filter=category eq 5 and statecode eq 1").json()[
        "value"
    ]
    (flow,) = rows
    assert flow["name"] == "On"
    (trigger,) = json.loads(flow["clientdata"])["properties"]["definition"]["triggers"].values()
    assert trigger["type"] == "OpenApiConnectionWebhook"
    assert trigger["inputs"]["host"]["operationId"] == "SubscribeWebhookTrigger"
    assert trigger["inputs"]["parameters"] == {
        "subscriptionRequest/message": 4,
        "subscriptionRequest/entityname": "lead",
        "subscriptionRequest/scope": 4,
        "subscriptionRequest/filteringattributes": "companyname",
    }
    with pytest.raises(ControlCallError):
        emulator.register_flow(message=8)


def test_user_privileges_follow_the_privileges_mode(emulator: EmulatorClient, api: WebApi) -> None:
    user_id = api.get("WhoAmI").json()["UserId"]
    path = f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    held = {p["PrivilegeName"]: p["Depth"] for p in api.get(path).json()["RolePrivileges"]}
    assert held["prvWriteContact"] == held["prvReadmsdynci_alternatekey"] == "Global"
    emulator.modes(privileges={"hydration-app": {"prvWriteContact": None, "prvReadLead": "Deep"}})
    body = api.get(path).json()
    assert body["@odata.context"].endswith("#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse")
    held = {p["PrivilegeName"]: p["Depth"] for p in body["RolePrivileges"]}
    assert "prvWriteContact" not in held
    assert held["prvReadLead"] == "Deep"
    other = api.get(
        "systemusers(00000000-0000-0000-0000-000000000001)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    )
    assert (other.status_code, other.json()["error"]["code"]) == (404, "0x80040217")
    with pytest.raises(ControlCallError):
        emulator.modes(privileges={"hydration-app": {"prvReadLead": "Everywhere"}})


def test_total_record_count(api: WebApi) -> None:
    body = api.get("RetrieveTotalRecordCount(EntityNames=['contact','lead'])").json()
    assert body["EntityRecordCountCollection"]["Keys"] == ["contact", "lead"]
    assert body["EntityRecordCountCollection"]["Values"] == [CONTACTS, LEADS]
    assert api.get("RetrieveTotalRecordCount(EntityNames=contact)").status_code == 400
    assert api.get("RetrieveTotalRecordCount(EntityNames=['account'])").status_code == 404


def test_writes_that_carry_bypass_headers_are_counted(emulator: EmulatorClient, api: WebApi) -> None:
    contact = api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"]
    api.get("contacts?$top=1", headers={"MSCRM.SuppressCallbackRegistrationExpanderJob": "true"})
    assert "write_headers" not in emulator.stats()  # a read is not a write
    headers = {"MSCRM.BypassBusinessLogicExecution": "CustomSync", "If-Match": "*"}
    assert api.patch(f"contacts({contact})", json={"firstname": "Ana"}, headers=headers).status_code == 204
    assert emulator.stats()["write_headers"] == {"MSCRM.BypassBusinessLogicExecution: CustomSync": 1}
