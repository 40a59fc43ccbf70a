"""The post-deploy hook, run with a stand-in ``az`` that records its arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA

HOOK = INFRA / "hooks" / "postdeploy.sh"
TOPIC = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.EventGrid/topics/evgt-abc"
APP = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/func-abc"


def run_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "az-calls"
    fake = bin_dir / "az"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{calls}"\n', encoding="utf-8")
    fake.chmod(0o755)
    environment = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    result = subprocess.run(  # noqa: S603
        ["/bin/sh", str(HOOK)], env=environment, capture_output=True, text=True, check=False, timeout=30
    )
    arguments = calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []
    return result, arguments


def test_hook_is_valid_posix_shell() -> None:
    subprocess.run(["/bin/sh", "-n", str(HOOK)], check=True, timeout=30)  # noqa: S603


@pytest.mark.parametrize("flag", [None, "false", "", "no"])
def test_does_nothing_unless_asked(tmp_path: Path, flag: str | None) -> None:
    env = {"EVENT_GRID_TOPIC_ID": TOPIC, "AZURE_FUNCTION_APP_ID": APP}
    if flag is not None:
        env["CREATE_EVENT_GRID_SUBSCRIPTION"] = flag
    result, arguments = run_hook(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert arguments == []
    assert "not requested" in result.stdout


@pytest.mark.parametrize("flag", ["true", "True", "1"])
def test_subscribes_unification_completed(tmp_path: Path, flag: str) -> None:
    result, arguments = run_hook(
        tmp_path, CREATE_EVENT_GRID_SUBSCRIPTION=flag, EVENT_GRID_TOPIC_ID=TOPIC, AZURE_FUNCTION_APP_ID=APP
    )
    assert result.returncode == 0, result.stderr
    assert arguments[:3] == ["eventgrid", "event-subscription", "create"]
    options = dict(zip(arguments[3::2], arguments[4::2], strict=True))
    assert options["--source-resource-id"] == TOPIC
    assert options["--endpoint-type"] == "azurefunction"
    assert options["--endpoint"] == f"{APP}/functions/unification_completed"
    assert options["--included-event-types"] == "Hydration.UnificationCompleted"
    assert options["--name"] == "hydration-unification-completed"


def test_fails_clearly_without_the_topic(tmp_path: Path) -> None:
    result, arguments = run_hook(tmp_path, CREATE_EVENT_GRID_SUBSCRIPTION="true", AZURE_FUNCTION_APP_ID=APP)
    assert result.returncode != 0
    assert arguments == []
    assert "EVENT_GRID_TOPIC_ID" in result.stderr


def test_a_failing_az_fails_the_hook(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text("#!/bin/sh\necho 'az: denied' >&2\nexit 3\n", encoding="utf-8")
    (bin_dir / "az").chmod(0o755)
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CREATE_EVENT_GRID_SUBSCRIPTION": "true",
        "EVENT_GRID_TOPIC_ID": TOPIC,
        "AZURE_FUNCTION_APP_ID": APP,
    }
    result = subprocess.run(  # noqa: S603
        ["/bin/sh", str(HOOK)], env=environment, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 3
