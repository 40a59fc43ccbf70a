"""Audit the pinned requirements with pip-audit, tolerating an unreachable advisory database, never silently.

``make audit`` (part of ``make test``) runs this. pip-audit reads the pins of the requirement files as
written (``--no-deps --disable-pip``: every version is pinned, nothing is installed) and asks the PyPI
advisory database about each one. The outcome is one of:

- a known vulnerability in any pin: each is listed with its advisory and fixed versions, exit 1;
- every pin audited, none vulnerable: says so with the count, exit 0;
- the database could not be reached, or did not answer for some pins (an offline machine, a registry
  mirror that serves no advisory data): says so loudly, naming every pin left unaudited, exit 0;
- pip-audit itself failed for another reason (a malformed requirement file, a missing tool): exit 2.

So a build never fails for want of network, and never passes an audit that did not happen without saying
that it did not happen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-infra.txt")
UNREACHABLE_SIGNS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
    "Connection refused",
)


@dataclass(frozen=True)
class AuditVerdict:
    """What the audit found, as the exit code and the lines to print."""

    code: int
    lines: tuple[str, ...]


def command(files: Sequence[str], *, timeout: int = 15, cache_dir: Path | None = None) -> list[str]:
    """The pip-audit command line for the requirement files (JSON on stdout, no progress spinner)."""
    requirements = [arg for name in files for arg in ("-r", name)]
    options = ["--no-deps", "--disable-pip", "--progress-spinner", "off", "--format", "json"]
    options += ["--timeout", str(timeout)] + (["--cache-dir", str(cache_dir)] if cache_dir else [])
    return [str(Path(sys.executable).with_name("pip-audit")), *requirements, *options]


def judge(returncode: int, stdout: str, stderr: str) -> AuditVerdict:
    """The verdict on one pip-audit run (pure, so every outcome is tested without a network)."""
    try:
        report: Any = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        report = None
    if isinstance(report, dict) and isinstance(report.get("dependencies"), list):
        return _judge_report(report["dependencies"])
    if returncode != 0 and any(sign in stderr for sign in UNREACHABLE_SIGNS):
        return AuditVerdict(
            0,
            (
                "AUDIT NOT DONE: the advisory database could not be reached (no network?).",
                "No dependency was audited; run `make audit` where PyPI answers before releasing.",
            ),
        )
    tail = stderr.strip().splitlines()[-5:]
    return AuditVerdict(2, (f"pip-audit failed without a report (exit {returncode}):", *tail))


def _judge_report(dependencies: list[Any]) -> AuditVerdict:
    vulnerable: list[str] = []
    skipped: list[str] = []
    audited = 0
    for dep in dependencies:
        if not isinstance(dep, dict):
            continue
        name = f"{dep.get('name')} {dep.get('version') or ''}".strip()
        if dep.get("skip_reason"):
            skipped.append(name)
            continue
        audited += 1
        for vuln in dep.get("vulns") or []:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            vulnerable.append(f"  {name}: {vuln.get('id')} (fixed in: {fixes})")
    lines: list[str] = []
    if vulnerable:
        lines += [
            f"VULNERABLE: {len(vulnerable)} known vulnerabilities in the pinned requirements:",
            *vulnerable,
        ]
    if skipped:
        lines += [
            f"AUDIT INCOMPLETE: {len(skipped)} of {len(skipped) + audited} pins could not be audited "
            "(the advisory database did not answer for them: offline, or a mirror without advisory data):",
            "  " + ", ".join(skipped),
        ]
    if audited and not vulnerable:
        lines.append(f"{audited} pinned dependencies audited: no known vulnerabilities.")
    if not dependencies:
        lines.append("AUDIT NOT DONE: pip-audit found no pinned dependency to audit.")
    return AuditVerdict(1 if vulnerable else 0, tuple(lines))


def main(files: Sequence[str] = REQUIREMENTS, *, cache_dir: Path | None = None) -> int:
    """Run the audit from the project root and print its verdict."""
    try:
        done = subprocess.run(  # noqa: S603 - our own tool, fixed arguments
            command(files, cache_dir=cache_dir),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"pip-audit could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    verdict = judge(done.returncode, done.stdout, done.stderr)
    for line in verdict.lines:
        print(line, file=sys.stderr if verdict.code else sys.stdout)
    return verdict.code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or REQUIREMENTS))
