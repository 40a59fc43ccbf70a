"""Scan ``infra/`` with checkov, offline, and fail on anything a plain ``checkov`` run would let through.

Run by ``make infra-check`` with the interpreter of ``.venv-infra`` (checkov's own environment). Beyond
"no failed check", it requires that every Bicep file was parsed and scanned (checkov reports an
unparsable file as a parsing error but still exits 0), that every suppression carries a reason, and that a
deliberately insecure template (``fixtures/insecure.bicep``) is flagged and an unparsable one
(``fixtures/unparsable.bicep``) is reported: proof that the scan is real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKOV = Path(sys.executable).with_name("checkov")
# Checks the insecure fixture must fail: HTTPS-only and TLS 1.2 storage, HTTPS-only app, Entra-only topic.
MUST_FLAG = {"CKV_AZURE_3", "CKV_AZURE_44", "CKV_AZURE_70", "CKV_AZURE_192"}
MIN_REASON = 20
# Files whose resources checkov has checks for (roles, identities and monitoring have none): each must be
# scanned, not skipped as unparsable.
MUST_SCAN = ("/app/function.bicep", "/app/storage.bicep", "/app/eventgrid.bicep")


def scan(directory: Path) -> dict[str, Any]:
    """The JSON report of checkov for of one directory (Bicep only, no download of policies or modules)."""
    command = [str(CHECKOV), "--directory", str(directory), "--framework", "bicep", "--skip-download"]
    command += ["--compact", "--output", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)  # noqa: S603
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"checkov did not run ({done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    if len(bicep) != 1:
        raise SystemExit(f"checkov scanned no Bicep in {directory}:\n{done.stdout[:2000]}")
    return dict(bicep[0])


def infra_problems(report: dict[str, Any]) -> list[str]:
    """Why the scan of ``infra/`` is not clean."""
    results, summary = report["results"], report["summary"]
    problems = [
        f"{c['check_id']} failed for {c['resource']} ({c['file_path']}:{c['file_line_range']}): "
        f"{c['check_name']}"
        for c in results.get("failed_checks", [])
    ]
    if summary.get("parsing_errors"):
        problems.append(f"checkov could not parse: {results.get('parsing_errors')}")
    scanned = {c["file_path"] for key in ("passed_checks", "skipped_checks") for c in results.get(key, [])}
    problems += [f"no check ran on {path}" for path in MUST_SCAN if path not in scanned]
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
        if len(reason) < MIN_REASON or reason == "No comment provided":
            problems.append(f"{check['check_id']} skipped without a reason in {check['file_path']}")
    return problems


def main() -> int:
    """Scan, report, and return the exit status."""
    report = scan(INFRA)
    problems = infra_problems(report)
    summary = report["summary"]
    print(
        f"checkov {summary.get('checkov_version')}: infra/ passed {summary['passed']}, "
        f"failed {summary['failed']}, skipped with a reason {summary['skipped']}, "
        f"resources {summary['resource_count']}"
    )
    fixtures = scan(FIXTURES)
    if not fixtures["summary"].get("parsing_errors"):
        problems.append("the unparsable fixture was not reported as a parsing error")
    flagged = {c["check_id"] for c in fixtures["results"].get("failed_checks", [])}
    if not flagged >= MUST_FLAG:
        problems.append(f"the insecure fixture was not flagged for {sorted(MUST_FLAG - flagged)}")
    else:
        print(f"insecure fixture flagged as expected ({', '.join(sorted(MUST_FLAG))})")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
