"""The dependency audit's verdicts: a vulnerability fails, an unreachable database says so and passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools import audit


def report(*dependencies: dict[str, Any]) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


CLEAN = {"name": "requests", "version": "2.34.2", "vulns": []}
SKIPPED = {"name": "jsonschema", "skip_reason": "Dependency not found on PyPI and could not be audited"}
VULNERABLE = {
    "name": "urllib3",
    "version": "1.26.0",
    "vulns": [{"id": "GHSA-xxxx-yyyy-zzzz", "fix_versions": ["1.26.5"], "description": "..."}],
}


def test_a_known_vulnerability_fails_the_build() -> None:
    verdict = audit.judge(1, report(CLEAN, VULNERABLE), "")
    assert verdict.code == 1
    text = "\n".join(verdict.lines)
    assert "VULNERABLE" in text
    assert "urllib3 1.26.0: GHSA-xxxx-yyyy-zzzz (fixed in: 1.26.5)" in text


def test_a_vulnerability_fails_even_when_other_pins_were_skipped() -> None:
    assert audit.judge(1, report(SKIPPED, VULNERABLE), "").code == 1


def test_a_clean_audit_passes_and_says_how_many_were_audited() -> None:
    verdict = audit.judge(0, report(CLEAN, CLEAN), "")
    assert verdict.code == 0
    assert verdict.lines == ("2 pinned dependencies audited: no known vulnerabilities.",)


def test_pins_the_database_did_not_answer_for_are_named_not_passed_over() -> None:
    verdict = audit.judge(0, report(CLEAN, SKIPPED), "")
    assert verdict.code == 0
    text = "\n".join(verdict.lines)
    assert "AUDIT INCOMPLETE: 1 of 2 pins could not be audited" in text
    assert "jsonschema" in text


def test_an_unreachable_database_says_so_and_does_not_fail() -> None:
    stderr = "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='pypi.org'): Max retries exceeded"
    verdict = audit.judge(1, "", stderr)
    assert verdict.code == 0
    assert verdict.lines[0].startswith("AUDIT NOT DONE: the advisory database could not be reached")


@pytest.mark.parametrize(
    ("code", "stdout", "stderr"),
    [
        (2, "", "ERROR: invalid requirement: 'requests=='"),
        (1, "not json", "Traceback: KeyError"),
        (0, "{}", ""),
    ],
)
def test_any_other_failure_fails_loudly(code: int, stdout: str, stderr: str) -> None:
    assert audit.judge(code, stdout, stderr).code == 2


def test_nothing_to_audit_is_not_a_clean_audit() -> None:
    verdict = audit.judge(0, report(), "")
    assert verdict.lines == ("AUDIT NOT DONE: pip-audit found no pinned dependency to audit.",)


def test_the_command_audits_the_pins_as_written() -> None:
    command = audit.command(["requirements.txt", "requirements-dev.txt"])
    assert command[0].endswith("pip-audit")
    assert command[1:5] == ["-r", "requirements.txt", "-r", "requirements-dev.txt"]
    assert {"--no-deps", "--disable-pip", "json"} <= set(command)


def test_the_real_tool_with_no_route_to_the_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    assert audit.main(["requirements.txt"], cache_dir=tmp_path) == 0  # an empty cache: nothing answers
    assert "AUDIT NOT DONE" in capsys.readouterr().out
