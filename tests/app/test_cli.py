"""``python -m hydration``: each command against the emulator and Azurite, and its exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.cli import main
from hydration.local_run import queue_options
from hydration.manifest import parse
from hydration.storage.errors import StorageError
from tests.functions import python_without_settings

from .conftest import assert_all_correct, manifest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), env=env, out=out)
    return code, out.getvalue()


def test_provision_then_plan_then_run(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    env = {**app_env, "HYDRATION_ALLOW_CREATE_LOOKUP": "false"}
    code, out = cli(env, "run", "--tables", "lead")
    assert code == 1  # the lookup is missing and the worker may not create it
    code, out = cli(env, "status", "--json")
    (run,) = json.loads(out)["runs"]
    assert run["status"] == "Failed"
    assert "provision" in run["tables"][0]["details"]

    code, out = cli(env, "provision")
    assert code == 0
    assert "msdynci_lookupfield_customerprofile on contact: created" in out
    assert "msdynci_lookupfield_customerprofile on lead: created" in out
    code, out = cli(env, "provision", "--tables", "contact")
    assert "already there" in out

    code, out = cli(env, "plan")
    assert code == 0
    assert "to write" in out
    assert emulator.stats()["rows_written"] == {}

    code, out = cli(env, "run")
    assert code == 0
    assert "contact: successful" in out  # progress lines
    assert "members: skipped" in out
    assert_all_correct(emulator)

    code, out = cli(env, "status")
    assert code == 0
    assert out.startswith("run ")
    assert "Successful" in out


def test_discover_lists_the_pairs_and_drafts_a_manifest(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    emulator.reset_stats()
    code, out = cli(app_env, "discover")
    assert code == 0
    assert out.splitlines() == [
        "DataverseMarketing\tcontact\tcontact (key contactid)",
        "DataverseSales\tcontact\tcontact (key contactid)",
        "DataverseSales\tlead\tlead (key leadid)",
        "LoyaltyPlatform\tMembers\tno Dataverse table",
    ]
    discover_requests = sum(emulator.stats()["requests"].values())
    assert discover_requests <= 5 + 4  # one per pair and one to end, plus metadata: not one per mapping row
    code, out = cli(app_env, "discover", "--manifest")
    draft = parse(out)
    assert draft.tables == ["contact", "lead"]


def test_exit_codes_for_skipped_runs_and_invalid_settings(
    app_env: dict[str, str], emulator: EmulatorClient, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = json.dumps(manifest(emulator.base_url, outputMode="privateDataLake"))
    code, out = cli({**app_env, "HYDRATION_MANIFEST": lake}, "run")
    assert code == 3
    assert "skipped" in out
    code, _ = cli({**app_env, "HYDRATION_SETTLE_MINUTES": "-1"}, "status")
    assert code == 2
    assert "HYDRATION_SETTLE_MINUTES" in capsys.readouterr().err
    code, _ = cli(app_env, "run", "--tables", "account")
    assert code == 2
    assert "not configured" in capsys.readouterr().err


def test_python_m_hydration_reports_missing_settings() -> None:
    result = python_without_settings("-m", "hydration", "status")
    assert result.returncode == 2
    assert "DATAVERSE_URL is required" in result.stderr
    assert "HYDRATION_MANIFEST is required" in result.stderr


def test_the_local_drain_follows_host_json() -> None:
    assert queue_options() == (5, 30)


def test_unreachable_storage_is_one_clear_line_and_its_exit_code(
    app_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;" + (
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    env = {**app_env, "HYDRATION_STORAGE": dead}
    code, _ = cli(env, "status")
    err = capsys.readouterr().err
    assert code == 4
    assert err.startswith("storage error")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert "a2V5" not in err  # the account key is never echoed
    with pytest.raises(StorageError):
        cli(env, "--debug", "status")
