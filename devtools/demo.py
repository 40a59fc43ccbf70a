"""``python -m devtools.demo``: the hydration job end to end on Azurite and the local Dataverse emulator.

Starts both, then runs the product's own command line (``python -m hydration``, the same planner and
queue handlers as the Functions app) with settings that point at them: discover what the mapping holds,
provision the lookup (the admin step), a dry run, a full pass, a re-unification of 1 % of the mapping
and an incremental pass, then a full pass whose reconcile clears stale links. After each pass it prints
the emulator's own row-by-row check. It stops what it started. Nothing here talks to Azure or a real
organization.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from dataverse_emulator import EmulatorServer, SeedParams
from dataverse_emulator.client import EmulatorClient
from devtools.azurite import Azurite
from hydration import cli

TABLES = ("contact", "lead")
SAMPLE_MANIFEST = Path(__file__).resolve().parent.parent / "manifest.sample.json"


def manifest(organization_url: str) -> str:
    """``manifest.sample.json`` pointed at the emulator: its three Dataverse sources and one other."""
    data = json.loads(SAMPLE_MANIFEST.read_text(encoding="utf-8"))
    data["organizationUrl"] = organization_url
    return json.dumps(data)


def _say(text: str) -> None:
    print(text, flush=True)


def _step(title: str, env: Mapping[str, str], *argv: str) -> int:
    _say(f"\n== {title}: python -m hydration {' '.join(argv)}")
    code = cli.main(list(argv), env=env)
    _say(f"(exit code {code})")
    return code


def _truth(emulator: EmulatorClient) -> None:
    for table in TABLES:
        summary = emulator.links(table, rows="none")["summary"]
        _say(
            f"  emulator check {table:8} rows {summary['rows']}: correct {summary['correct']}, "
            f"missing {summary['missing']}, wrong {summary['wrong']}, stale {summary['stale']}, "
            f"pending {summary['pending']}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration; 0 when every pass succeeded and every row checks out."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--leads", type=int, default=5000)
    args = parser.parse_args(argv)
    _say("starting Azurite and the Dataverse emulator ...")
    with (
        Azurite() as azurite,
        EmulatorServer(seed=SeedParams(contacts=args.contacts, leads=args.leads)) as server,
    ):
        emulator = EmulatorClient(server.base_url)
        _say(f"Dataverse emulator at {server.base_url}, {args.contacts} contacts and {args.leads} leads")
        env = {
            "DATAVERSE_URL": server.base_url,
            "HYDRATION_STORAGE": azurite.connection_string,
            "HYDRATION_MANIFEST": manifest(server.base_url),
        }
        codes = [
            _step("what the mapping table holds", env, "discover"),
            _step("create the lookup column (the admin step)", env, "provision"),
            _step("dry run: what a first pass would write", env, "plan"),
            _step("first pass", env, "run"),
        ]
        _truth(emulator)
        changes = emulator.reunify(0.01, seed=2)
        _say(f"\nre-unified 1 % of the mapping: {changes}")
        emulator.advance_clock(16 * 60)  # let the changes settle (HYDRATION_SETTLE_MINUTES is 15)
        emulator.reset_stats()
        codes.append(_step("incremental pass", env, "run"))
        stats = emulator.stats()
        _say(f"  requests to Dataverse: {stats['requests']}; rows written: {stats['rows_written']}")
        _truth(emulator)
        codes.append(_step("full pass (its reconcile clears stale links)", env, "run", "--full"))
        _truth(emulator)
        _step("status", env, "status", "--limit", "3")
    _say("\nstopped Azurite and the emulator")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
