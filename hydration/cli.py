"""``python -m hydration``: every operator command (run, plan, preflight, status, history, and more).

``run``, ``plan`` and ``retry-failed`` start a run through the same planner as the Functions triggers,
then drain the job queue locally through the same handlers the queue functions call (``local_run``),
with a live bar per table on a terminal and plain lines elsewhere (``run_progress``). Settings come from
the environment, as in the Functions app (see ``local.settings.sample.json``). This module only parses
the command line and dispatches; each command's logic lives in its own module.

``plan`` prints the preflight (``preflight``: what a first pass fires and whether it can run) before its
dry run.

Exit codes: 0 the run succeeded (or the command did its job, also ``retry-failed`` with nothing to
retry); 1 the run failed; 2 invalid settings, manifest or arguments; 3 the run was Skipped; 4 storage
unreachable or misconfigured; 5 the preflight found a problem that blocks a run (``plan`` exits 5 when
its dry run succeeded but the preflight blocks); 6 the run is Held by the relink guard (approve it with
``approve RUN``); 7 the run to approve has nothing held (an unknown run to approve is 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from .approval import ApprovalError, NothingHeldError, approve
from .dataverse.errors import DataverseError
from .dataverse.metadata import provision
from .discovery import discover, draft_manifest
from .history import render_history
from .local_run import NOTHING_HELD_EXIT, follow, start_and_drain
from .manifest import ManifestError, entry_problem
from .planner import RunRequest, RunRequestError
from .preflight import run_preflight
from .preflight_report import BLOCKED_EXIT, problems
from .preflight_report import render as render_preflight
from .retry_failed import SCANNED_RUNS, failed_tables, retry_selection
from .service import Services, services
from .settings import SettingsError, apply_log_levels
from .status import report
from .status_text import render
from .status_watch import watch
from .storage.errors import StorageError


def _tables(text: str | None) -> tuple[str, ...] | None:
    return None if not text else tuple(t.strip().lower() for t in text.split(",") if t.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hydration", description="CustomerId Backstamping Hydration"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a run and process it here, with progress")
    run.add_argument("--full", action="store_true", help="a full pass (with reconcile) for every table")
    run.add_argument("--tables", help="comma-separated Dataverse tables among those configured")
    run.add_argument(
        "--approve", action="store_true", help="with --full: accept every link it changes (never held)"
    )
    plan = commands.add_parser("plan", help="dry run: what a run would write and clear, writing nothing")
    plan.add_argument("--full", action="store_true")
    plan.add_argument("--tables")
    status = commands.add_parser("status", help="the latest runs")
    status.add_argument("--json", action="store_true", help="the same JSON as GET /api/status")
    status.add_argument("--run", help="one run's id")
    status.add_argument("--limit", type=int, default=5)
    status.add_argument("--watch", action="store_true", help="refresh until no run is running")
    status.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes (--watch)")
    history = commands.add_parser("history", help="the last runs, with every table's outcome")
    history.add_argument("--limit", type=int, default=20, help="how many runs (at most 100)")
    history.add_argument("--json", action="store_true", help="the same JSON as GET /api/status")
    commands.add_parser("retry-failed", help="start a run for the tables whose latest task Failed")
    approve_cmd = commands.add_parser("approve", help="let a held run's tables go on live, and process it")
    approve_cmd.add_argument("run", help="the held run's id")
    discover_cmd = commands.add_parser("discover", help="the (data source, table) pairs in the mapping")
    discover_cmd.add_argument("--manifest", action="store_true", help="print a draft manifest instead")
    prov = commands.add_parser("provision", help="create the lookup column (for an administrator)")
    prov.add_argument("--tables", help="comma-separated tables (default: the manifest's eligible tables)")
    check = commands.add_parser("preflight", help="what a first pass fires, and whether it can run")
    check.add_argument("--tables", help="comma-separated tables (default: the manifest's eligible tables)")
    return parser


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, out: TextIO | None = None
) -> int:
    """Parse the command line and run one command; returns the exit code.

    Every error an operator can meet is one line on standard error and an exit code, never a traceback
    (``--debug`` shows it): an administrator reads the line, not the stack.
    """
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        svc = services(os.environ if env is None else env)
        apply_log_levels(svc.settings)
        return _command(args, svc, out)
    except (SettingsError, RunRequestError, ManifestError, DataverseError, StorageError) as exc:
        if args.debug:
            raise
        prefix, code = _ERRORS[next(k for k in _ERRORS if isinstance(exc, k))]
        sys.stderr.write(f"{prefix}{exc}\n")
        return code


_ERRORS: dict[type[Exception], tuple[str, int]] = {
    SettingsError: ("", 2),
    RunRequestError: ("error: ", 2),
    ManifestError: ("error: ", 2),
    DataverseError: ("Dataverse error: ", 1),
    StorageError: ("storage error (is HYDRATION_STORAGE reachable and right?): ", 4),
}
"""Each error an operator can meet: the words before its message, and the exit code."""


def _configured_tables(svc: Services, text: str | None) -> tuple[str, ...]:
    """The tables named on the command line, else the manifest's tables with an eligible entry."""
    manifest = svc.planner().manifest()
    return _tables(text) or tuple(
        t for t in manifest.tables if any(entry_problem(e, manifest) is None for e in manifest.entries_of(t))
    )


def _preflight(svc: Services, text: str | None, out: TextIO) -> int:
    """Print the preflight; its exit code (``BLOCKED_EXIT`` when a run could not go ahead)."""
    tables = _configured_tables(svc, text)
    found = run_preflight(svc.client, svc.write_clients, svc.metadata, svc.settings, tables)
    out.write(render_preflight(found))
    return BLOCKED_EXIT if problems(found) else 0


def _command(args: argparse.Namespace, svc: Services, out: TextIO) -> int:
    if args.command == "preflight":
        return _preflight(svc, args.tables, out)
    if args.command in ("run", "plan"):
        plan = args.command == "plan"
        checked = _preflight(svc, args.tables, out) if plan else 0
        request = RunRequest(
            trigger="cli",
            full=args.full,
            tables=_tables(args.tables),
            plan=plan,
            approve=getattr(args, "approve", False),
        )
        code = start_and_drain(svc, request, out)
        return checked if code == 0 else code
    if args.command == "approve":
        return _approve(svc, args.run, out)
    if args.command == "status":
        return _status(args, svc, out)
    if args.command == "history":
        data = report(svc.state, now=svc.clock.now(), limit=max(1, min(args.limit, 100)))
        out.write((json.dumps(data, indent=2) if args.json else render_history(data)) + "\n")
        return 0
    if args.command == "retry-failed":
        return _retry_failed(svc, out)
    if args.command == "discover":
        return _discover(args, svc, out)
    return _provision(args, svc, out)


def _approve(svc: Services, run_id: str, out: TextIO) -> int:
    """Resume a held run's tables live, then process it here as ``run`` does."""
    try:
        approved = approve(svc.state, svc.queue, run_id, owner="cli-approval", now=svc.clock.now())
    except ApprovalError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return NOTHING_HELD_EXIT if isinstance(exc, NothingHeldError) else 2
    out.write(f"run {run_id}: approved, {', '.join(approved.tables)} resumed\n")
    return follow(svc, run_id, out)


def _status(args: argparse.Namespace, svc: Services, out: TextIO) -> int:
    limit = max(1, min(args.limit, 100))
    if args.watch:
        return watch(svc, out, interval=max(0.0, args.interval), limit=limit, run_id=args.run)
    data = report(svc.state, now=svc.clock.now(), limit=limit, run_id=args.run)
    out.write((json.dumps(data, indent=2) if args.json else render(data)) + "\n")
    return 0


def _retry_failed(svc: Services, out: TextIO) -> int:
    retry, dropped = retry_selection(failed_tables(svc.state), svc.planner().manifest())
    for table in dropped:
        out.write(f"{table}: its latest task Failed, but the manifest no longer configures it; left out\n")
    if not retry:
        out.write(f"nothing to retry: no configured table's latest task Failed (last {SCANNED_RUNS} runs)\n")
        return 0
    out.write(f"retrying the tables whose latest task Failed: {', '.join(retry)}\n")
    return start_and_drain(svc, RunRequest(trigger="cli", tables=tuple(retry)), out)


def _discover(args: argparse.Namespace, svc: Services, out: TextIO) -> int:
    found = discover(svc.client, svc.metadata)
    if args.manifest:
        out.write(json.dumps(draft_manifest(svc.settings.dataverse_url, found), indent=2) + "\n")
        return 0
    for pair in found:
        table = (
            f"{pair.dataverse_table} (key {pair.primary_key})"
            if pair.dataverse_table
            else "no Dataverse table"
        )
        out.write(f"{pair.data_source}\t{pair.entity}\t{table}\n")
    if not found:
        out.write("the mapping table has no rows\n")
    return 0


def _provision(args: argparse.Namespace, svc: Services, out: TextIO) -> int:
    for info in provision(svc.metadata, _configured_tables(svc, args.tables), svc.settings.lookup):
        state = "created" if info.created else "already there"
        out.write(
            f"{info.attribute} on {info.table}: {state} (navigation property {info.navigation_property})\n"
        )
    return 0
