"""``python -m hydration preflight`` and ``plan`` over real HTTP against the emulator (and Azurite).

Plug-in steps and cloud flows are registered through the emulator's control API as an administrator
would register them; privileges are taken away through its ``privileges`` mode.
"""

from __future__ import annotations

import io

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.cli import main
from hydration.preflight_report import BLOCKED_EXIT

pytestmark = pytest.mark.integration
LOOKUP = "msdynci_lookupfield_customerprofile"
EXTRA = "0f8fad5b-d9cb-469f-a165-70867728950e"


def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), env=env, out=out)
    return code, out.getvalue()


def section(out: str, table: str) -> str:
    """The lines the preflight prints for one table."""
    lines = out.splitlines()
    start = lines.index(f"{table}:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


@pytest.fixture
def provisioned(app_env: dict[str, str]) -> dict[str, str]:
    """``app_env`` with the lookup created on contact and lead, so only what a test changes blocks."""
    assert cli(app_env, "provision")[0] == 0
    return app_env


def test_a_clean_organization_blocks_nothing(provisioned: dict[str, str]) -> None:
    code, out = cli(provisioned, "preflight")
    assert code == 0, out
    contact = section(out, "contact")
    assert f"lookup {LOOKUP}: exists" in contact
    assert "UpdateMultiple: enabled" in contact
    assert "fires: none (custom)" in contact
    assert "1 Microsoft step(s)" in contact
    assert "cloud flows that would trigger: none" in contact
    assert "first pass: 300 rows, under a minute with 1 user(s) at 393.2 rows/s" in contact
    assert "first pass: 150 rows" in section(out, "lead")
    assert "main identity: holds every privilege it needs" in out
    assert "nothing blocks a run" in out
    assert "suggestions:" not in out


def test_the_steps_and_flows_a_lookup_write_fires_and_the_settings_that_spare_them(
    provisioned: dict[str, str], emulator: EmulatorClient
) -> None:
    emulator.register_step(name="Contoso.Audit", table="contact", stage=20)
    emulator.register_step(name="Contoso.NameOnly", table="contact", filteringattributes="firstname,lastname")
    emulator.register_step(name="Contoso.Sync", table="contact", stage=40, mode=1, filteringattributes=LOOKUP)
    emulator.register_step(name="Contoso.Off", table="contact", stage=10, enabled=False)
    emulator.register_step(name="Contoso.OnCreate", table="contact", message="Create")
    emulator.register_flow(name="Notify owner", table="contact", message=4)
    emulator.register_flow(
        name="Email changed", table="contact", message=3, filteringattributes="emailaddress1"
    )
    emulator.register_flow(name="Lead created", table="lead", message=1)
    emulator.register_flow(name="Draft", table="contact", activated=False)
    emulator.register_flow(
        name="Hand edited", table="contact", clientdata='{"properties": {"definition": "?"}}'
    )

    code, out = cli(provisioned, "preflight", "--tables", "contact")
    assert code == 0, out  # side effects are information, not a blocking problem
    contact = section(out, "contact")
    assert "- Contoso.Audit [Update, PreOperation, sync, any column]" in contact
    assert f"- Contoso.Sync [Update, PostOperation, async, filtering {LOOKUP}]" in contact
    for silent in (
        "Contoso.NameOnly",
        "Contoso.Off",
        "Contoso.OnCreate",
        "Email changed",
        "Lead created",
        "Draft",
    ):
        assert silent not in out
    assert "- Notify owner [change type 4, any column]" in contact
    assert "- Hand edited: could not read trigger (its definition has no triggers)" in contact
    assert "lead:" not in out
    assert "HYDRATION_BYPASS_BUSINESS_LOGIC=CustomSync,CustomAsync" in out
    assert "HYDRATION_SUPPRESS_FLOWS=true" in out

    bypassing = {
        **provisioned,
        "HYDRATION_BYPASS_BUSINESS_LOGIC": "CustomSync,CustomAsync",
        "HYDRATION_SUPPRESS_FLOWS": "true",
    }
    code, out = cli(bypassing, "preflight", "--tables", "contact")
    assert code == 0, out
    assert out.count("(bypassed by HYDRATION_BYPASS_BUSINESS_LOGIC)") == 2
    assert "(suppressed by HYDRATION_SUPPRESS_FLOWS)" in out
    assert "suggestions:" not in out


def test_bypass_needs_its_privilege_and_the_writes_carry_the_headers(
    provisioned: dict[str, str], emulator: EmulatorClient
) -> None:
    env = {**provisioned, "HYDRATION_BYPASS_BUSINESS_LOGIC": "CustomSync", "HYDRATION_SUPPRESS_FLOWS": "true"}
    emulator.modes(privileges={"hydration-app": {"prvBypassCustomBusinessLogic": None}})
    code, out = cli(env, "preflight")
    assert code == BLOCKED_EXIT
    assert "main identity: missing privilege prvBypassCustomBusinessLogic" in out

    emulator.modes(privileges={})
    assert cli(env, "run", "--tables", "lead")[0] == 0
    headers = emulator.stats()["write_headers"]
    assert headers["MSCRM.BypassBusinessLogicExecution: CustomSync"] >= 1
    assert headers["MSCRM.SuppressCallbackRegistrationExpanderJob: true"] >= 1


def test_a_missing_lookup_blocks_unless_the_app_may_and_can_create_it(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    code, out = cli({**app_env, "HYDRATION_ALLOW_CREATE_LOOKUP": "false"}, "preflight", "--tables", "lead")
    assert code == BLOCKED_EXIT
    assert f"lookup {LOOKUP}: does not exist yet" in out
    assert "run `python -m hydration provision`" in out

    code, out = cli(app_env, "preflight", "--tables", "lead")  # allowed, and the identity can
    assert code == 0, out

    emulator.modes(privileges={"hydration-app": {"prvCreateRelationship": None}})
    code, out = cli(app_env, "preflight", "--tables", "lead")
    assert code == BLOCKED_EXIT
    assert "main identity: missing privilege prvCreateRelationship (needed to create the lookup" in out


def test_missing_and_shallow_privileges_of_every_identity(
    provisioned: dict[str, str], emulator: EmulatorClient
) -> None:
    env = {**provisioned, "DATAVERSE_EXTRA_CLIENT_IDS": EXTRA}
    emulator.modes(
        privileges={
            "hydration-app": {"prvReadmsdynci_alternatekey": None, "prvReadLead": "Local"},
            "hydration-app-2": {"prvWriteContact": None},
        }
    )
    code, out = cli(env, "preflight")
    assert code == BLOCKED_EXIT
    assert (
        "main identity: missing privilege prvReadmsdynci_alternatekey (needed to read msdynci_alternatekey)"
        in out
    )
    assert "main identity: prvReadLead only at Local depth (read lead needs Global)" in out
    assert "write identity 2: missing privilege prvWriteContact (needed to write contact)" in out
    assert "with 2 user(s)" in out

    emulator.modes(privileges={"hydration-app": {"prvReadLead": "Local"}})
    code, out = cli(env, "preflight")
    assert code == 0, out  # a shallow privilege is shown, not blocking
    assert "write identity 2: holds every privilege it needs" in out


def test_update_multiple_and_an_unknown_table(provisioned: dict[str, str], emulator: EmulatorClient) -> None:
    emulator.modes(update_multiple={"contact": True, "lead": False})
    code, out = cli(provisioned, "preflight", "--tables", "lead,account")
    assert code == BLOCKED_EXIT
    assert "UpdateMultiple: not enabled" in section(out, "lead")
    assert "does not exist" in section(out, "account")


def test_plan_prints_the_preflight_then_its_dry_run(
    provisioned: dict[str, str], emulator: EmulatorClient
) -> None:
    emulator.register_flow(name="Notify owner", table="lead", message=3)
    code, out = cli(provisioned, "plan", "--tables", "lead")
    assert code == 0, out
    assert out.index("preflight") < out.index("Notify owner") < out.index("run ")
    assert "to write" in out
    assert emulator.stats()["rows_written"] == {}

    emulator.modes(privileges={"hydration-app": {"prvWriteLead": None}})
    code, out = cli(provisioned, "plan", "--tables", "lead")
    assert code == BLOCKED_EXIT  # the dry run succeeded, but a run would fail
    assert "missing privilege prvWriteLead" in out
