"""``python -m hydration``: run, plan, status, approve, discover and provision from a shell.

``run`` and ``plan`` start a run through the same planner as the Functions triggers, then drain the job
queue locally through the same handlers the queue functions call, following the host's queue settings
from ``host.json`` (dequeue count, retry delay, poison queue), and print progress as tables advance.
Settings come from the environment, as in the Functions app (see ``local.settings.sample.json``).

Exit codes: 0 the run succeeded (or the command did its job); 1 the run failed; 2 invalid settings,
manifest or arguments (an unknown run to approve); 3 the run was Skipped; 4 storage unreachable or
misconfigured; 5 the run is Held by the relink guard (approve it with ``approve RUN``); 6 the run to
approve has nothing held.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import handlers
from .approval import ApprovalError, NothingHeldError, approve
from .dataverse.errors import DataverseError
from .dataverse.metadata import provision
from .discovery import discover, draft_manifest
from .manifest import ManifestError, entry_problem
from .planner import RunRequest, RunRequestError
from .service import Services, services
from .settings import SettingsError, apply_log_levels
from .status import approve_hint, render, report, run_view
from .statuses import FINAL, SETTLED, Status
from .storage.driver import Delivery, QueueDriver
from .storage.errors import StorageError

EXIT: dict[str, int] = {Status.SUCCESSFUL: 0, Status.FAILED: 1, Status.SKIPPED: 3, Status.HELD: 5}
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def queue_options(path: Path = HOST_JSON) -> tuple[int, int]:
    """``maxDequeueCount`` and ``visibilityTimeout`` (s) from ``host.json``: drain as the host would."""
    try:
        queues = json.loads(path.read_text(encoding="utf-8"))["extensions"]["queues"]
    except (OSError, ValueError, KeyError):
        return 5, 30
    hours, minutes, seconds = (int(x) for x in str(queues.get("visibilityTimeout", "00:00:30")).split(":"))
    return int(queues.get("maxDequeueCount", 5)), hours * 3600 + minutes * 60 + seconds


def local_driver(
    svc: Services, *, visibility_timeout: int | None = None, lease_seconds: int = 300
) -> QueueDriver:
    """A driver that pumps the job queue into the worker and poison handlers, as the host does.

    ``visibility_timeout`` overrides ``host.json``'s delay before a failed message is retried.
    """

    def handle(delivery: Delivery) -> None:
        handlers.on_message(delivery.text, delivery.dequeue_count, svc)

    def poisoned(delivery: Delivery, reason: str) -> None:
        handlers.on_poison(delivery.text, delivery.dequeue_count, svc)

    max_dequeue_count, host_visibility_timeout = queue_options()
    return QueueDriver(
        svc.queue,
        svc.poison,
        handle,
        on_poison=poisoned,
        max_dequeue_count=max_dequeue_count,
        visibility_timeout=host_visibility_timeout if visibility_timeout is None else visibility_timeout,
        lease_seconds=lease_seconds,
        clock=svc.clock,
    )


def _progress(view: dict[str, Any], seen: dict[str, tuple[Any, ...]], out: TextIO) -> None:
    for table in view["tables"]:
        if table["status"] == Status.SKIPPED and not seen:
            seen[table["table"]] = ()  # said when the run started
        c = table["counts"]
        key = (table["status"], c["pages"], c["written"], c["cleared"])
        if seen.get(table["table"]) == key:
            continue
        seen[table["table"]] = key
        out.write(
            f"  {table['table']}: {table['status'].lower()}, {c['pages']} pages, "
            f"{c['rows_read']:,} rows read, "
            f"{c['written']:,} {'to write' if table['kind'] == 'plan' else 'written'}, "
            f"{c['already_correct']:,} already correct, {c['cleared']:,} cleared\n"
        )
        out.flush()


def drain_run(
    svc: Services, run_id: str, *, out: TextIO, poll: float = 0.5, driver: QueueDriver | None = None
) -> dict[str, Any]:
    """Process queue messages until the run is final or held; returns the run's status view."""
    driver = driver or local_driver(svc)
    seen: dict[str, tuple[Any, ...]] = {}
    while True:
        record = svc.state.run(run_id) or {"run_id": run_id}
        view = run_view(svc.state, record)
        _progress(view, seen, out)
        if view["status"] in SETTLED:
            return view
        if driver.step() is None:
            driver.clock.sleep(poll)  # a delayed continuation (throttling) or another consumer's lease


def _start(svc: Services, request: RunRequest, out: TextIO) -> int:
    started = svc.planner().start(request)
    out.write(f"run {started.run_id}: {started.status.lower()}")
    out.write(f", queued {', '.join(started.queued)}" if started.queued else "")
    out.write("\n")
    for table, reason in started.skipped.items():
        out.write(f"  {table}: skipped: {reason}\n")
    if started.status in FINAL:
        if started.details:
            out.write(f"  {started.details}\n")
        return EXIT[started.status]
    return _follow(svc, started.run_id, out)


def _follow(svc: Services, run_id: str, out: TextIO) -> int:
    """Process the run here until it is final or held, print its status, and return its exit code."""
    view = drain_run(svc, run_id, out=out)
    out.write("\n" + render({"runs": [view]}) + "\n")
    if view["status"] == Status.HELD:
        out.write(f"\nheld: nothing was written to the held tables; to go on: {approve_hint(run_id)}\n")
    return EXIT[view["status"]]


def _approve(svc: Services, run_id: str, out: TextIO) -> int:
    """Resume a held run's tables live, then process it here as ``run`` does."""
    try:
        approved = approve(svc.state, svc.queue, run_id, owner="cli-approval", now=svc.clock.now())
    except ApprovalError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 6 if isinstance(exc, NothingHeldError) else 2
    out.write(f"run {run_id}: approved, {', '.join(approved.tables)} resumed\n")
    return _follow(svc, run_id, out)


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
    approve_cmd = commands.add_parser("approve", help="let a held run's tables go on live, and process it")
    approve_cmd.add_argument("run", help="the held run's id")
    discover_cmd = commands.add_parser("discover", help="the (data source, table) pairs in the mapping")
    discover_cmd.add_argument("--manifest", action="store_true", help="print a draft manifest instead")
    prov = commands.add_parser("provision", help="create the lookup column (for an administrator)")
    prov.add_argument("--tables", help="comma-separated tables (default: the manifest's eligible tables)")
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


def _command(args: argparse.Namespace, svc: Services, out: TextIO) -> int:
    if args.command in ("run", "plan"):
        request = RunRequest(
            trigger="cli",
            full=args.full,
            tables=_tables(args.tables),
            plan=args.command == "plan",
            approve=getattr(args, "approve", False),
        )
        return _start(svc, request, out)
    if args.command == "approve":
        return _approve(svc, args.run, out)
    if args.command == "status":
        data = report(svc.state, limit=max(1, min(args.limit, 100)), run_id=args.run)
        out.write((json.dumps(data, indent=2) if args.json else render(data)) + "\n")
        return 0
    if args.command == "discover":
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
    manifest = svc.planner().manifest()
    tables = _tables(args.tables) or tuple(
        t for t in manifest.tables if any(entry_problem(e, manifest) is None for e in manifest.entries_of(t))
    )
    for info in provision(svc.metadata, tables, svc.settings.lookup):
        state = "created" if info.created else "already there"
        out.write(
            f"{info.attribute} on {info.table}: {state} (navigation property {info.navigation_property})\n"
        )
    return 0
