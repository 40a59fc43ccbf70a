"""``python -m devtools.demo``: the hydration job end to end on Azurite and the local Dataverse emulator.

Starts both, then: a dry run, a full pass, a re-unification of 1 % of the mapping and an incremental
pass, printing each outcome and the emulator's own check of every row, and stops what it started.
Nothing here talks to Azure or a real organization.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from datetime import UTC, datetime

from dataverse_emulator import EmulatorServer, SeedParams
from dataverse_emulator.client import EmulatorClient
from devtools.azurite import Azurite
from hydration.dataverse.auth import token_provider
from hydration.dataverse.client import DataverseClient
from hydration.runs import start_run
from hydration.state import StateStore
from hydration.storage.driver import Delivery, QueueDriver
from hydration.storage.queues import AzureTaskQueue, poison_queue_name
from hydration.storage.tables import AzureStateTables
from hydration.worker import EngineSettings, Worker

TABLES = {
    "contact": [("DataverseSales", "contact"), ("DataverseMarketing", "contact")],
    "lead": [("DataverseSales", "lead")],
}


def _say(text: str) -> None:
    print(text, flush=True)


def _run(label: str, state: StateStore, queue: AzureTaskQueue, driver: QueueDriver, **options: bool) -> None:
    started = time.monotonic()
    run_id = start_run(state, queue, TABLES, now=datetime.now(UTC), trigger="demo", **options)
    driver.drain(idle_timeout=10)
    _say(f"\n{label} (run {run_id}, {time.monotonic() - started:.1f} s)")
    for task in state.tasks(run_id):
        _say(f"  {task.table:8} {task.status:10} {task.details}")


def _truth(emulator: EmulatorClient) -> None:
    for table in TABLES:
        summary = emulator.links(table, rows="none")["summary"]
        _say(
            f"  check {table:8} rows {summary['rows']}: correct {summary['correct']}, "
            f"missing {summary['missing']}, wrong {summary['wrong']}, stale {summary['stale']}, "
            f"pending {summary['pending']}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--leads", type=int, default=5000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _say("starting Azurite and the Dataverse emulator ...")
    with (
        Azurite() as azurite,
        EmulatorServer(seed=SeedParams(contacts=args.contacts, leads=args.leads)) as server,
    ):
        emulator = EmulatorClient(server.base_url)
        _say(f"Dataverse emulator at {server.base_url}, {args.contacts} contacts and {args.leads} leads")
        client = DataverseClient(
            organization_url=server.base_url,
            tokens=token_provider(server.base_url, development_user="demo-app"),
        )
        state = StateStore(AzureStateTables.from_connection_string(azurite.connection_string))
        name = f"hydration-{uuid.uuid4().hex[:8]}"
        queue = AzureTaskQueue.from_connection_string(azurite.connection_string, name)
        poison = AzureTaskQueue.from_connection_string(azurite.connection_string, poison_queue_name(name))
        worker = Worker(
            client=client, state=state, queue=queue, settings=EngineSettings(allow_create_lookup=True)
        )

        def handle(delivery: Delivery) -> None:
            worker.handle(delivery.text)

        driver = QueueDriver(
            queue, poison, handle, on_poison=lambda d, reason: worker.handle_poison(d.text, d.dequeue_count)
        )
        _run("dry run (plan): what a first pass would write", state, queue, driver, plan=True)
        _run("first pass (full)", state, queue, driver)
        _truth(emulator)
        changes = emulator.reunify(0.01, seed=2)
        _say(f"\nre-unified 1 % of the mapping: {changes}")
        emulator.advance_clock(16 * 60)  # let the changes settle (HYDRATION_SETTLE_MINUTES is 15)
        emulator.reset_stats()
        _run("incremental pass", state, queue, driver)
        _truth(emulator)
        stats = emulator.stats()
        _say(f"  requests to Dataverse: {stats['requests']}; rows written: {stats['rows_written']}")
        _run("full pass (reconcile clears stale links)", state, queue, driver, full=True)
        _truth(emulator)
    _say("\nstopped Azurite and the emulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
