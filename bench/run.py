"""``python -m bench``: the engine against the emulator's service protection model, through the real queue.

For 1, 2 and 4 application users it runs, on Azurite and an emulator in its own process with limits on:
a full pass over N rows, re-unify 1 % and an incremental pass, and a pass with no change; and, once, a
naive baseline (one PATCH per row, sequential) on a sample. Time is the emulator's: real seconds divided
by the time factor, so the figures read as they would against the modelled service.

It prints one table and writes ``bench/results/latest.json``. ``BENCH_ROWS`` (default 200,000) sets N.

The time factor defaults to 1 (the model in real time). Below 1 the emulator's windows shrink but the
worker's own pacing keeps the documented 300-second window, and the emulator's CPU counts ``1 / factor``
times against the model (see docs/emulator-scale.md); the table's "emulator CPU" column (CPU seconds
per second of the emulator process) says when the emulator, one process behind one lock, is the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataverse_emulator.client import EmulatorClient
from devtools.azurite import Azurite
from hydration.dataverse.auth import token_provider
from hydration.dataverse.client import DataverseClient
from hydration.dataverse.errors import NotFoundError
from hydration.link_settings import LinkSettings
from hydration.passes import EngineSettings
from hydration.runs import start_run
from hydration.state import StateStore
from hydration.storage.driver import Delivery, QueueDriver
from hydration.storage.queues import AzureTaskQueue, poison_queue_name
from hydration.storage.tables import AzureStateTables
from hydration.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"contact": [("DataverseSales", "contact"), ("DataverseMarketing", "contact")]}
CEILING = 4.0
"""Server-seconds of execution time per second and user: 1,200 s per 300 s."""


@dataclass
class Measure:
    """One scenario's figures."""

    scenario: str
    users: int
    rows: int
    written: int
    emulated_seconds: float
    rows_per_second: float
    requests: dict[str, int]
    requests_per_1000_rows: float
    requests_by_kind_per_1000_rows: dict[str, float]
    throttled: dict[str, int] = field(default_factory=dict)
    throttled_share: float = 0.0
    ceiling_share: float = 0.0
    cpu_share: dict[str, float] = field(default_factory=dict)
    """CPU seconds per real second of each process (1.0 is one core busy): the emulator's near 1.0 means
    the figures measure the emulator, not the product (it is one process behind one lock)."""
    timeline: list[list[float]] = field(default_factory=list)
    """``[emulated seconds, execution seconds charged, rows written]`` every ``SAMPLE_SECONDS``: where the
    pass left the ceiling unused (step boundaries, the reconcile)."""


SAMPLE_SECONDS = 2.0
"""Real seconds between two samples of the emulator's counters for a scenario's timeline."""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process and its threads, from ``/proc`` (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """Samples the emulator's counters in a thread while a scenario runs."""

    def __init__(self, emulator: EmulatorClient, time_factor: float) -> None:
        self.emulator, self.time_factor = emulator, time_factor
        self.points: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            stats = self.emulator.stats()
            self.points.append(
                [
                    round((time.monotonic() - self._started) / self.time_factor, 1),
                    round(sum(stats.get("execution_seconds", {}).values()), 1),
                    sum(stats["rows_written"].values()),
                ]
            )


class Bench:
    """One emulator process and one Azurite, reused across scenarios."""

    def __init__(self, rows: int, time_factor: float, azurite: Azurite) -> None:
        self.rows, self.time_factor, self.azurite = rows, time_factor, azurite
        self.process = subprocess.Popen(  # our own module, fixed arguments
            [sys.executable, "-m", "dataverse_emulator", "--port", "0", "--contacts", "1", "--leads", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.emulator = EmulatorClient(self.url)

    def close(self) -> None:
        """Stop the emulator process."""
        self.process.terminate()
        self.process.wait(timeout=30)

    def reset(self) -> None:
        """A fresh scene of ``rows`` contacts, with the limits model on."""
        self.emulator.reset(contacts=self.rows, leads=0, seed=1)
        self.emulator.limits(enabled=True, time_factor=self.time_factor)

    def worker(self, users: int) -> tuple[Worker, StateStore, AzureTaskQueue, QueueDriver]:
        """A worker whose writes are spread over ``users`` application users."""
        clients = [
            DataverseClient(
                organization_url=self.url, tokens=token_provider(self.url, development_user=f"app-{i}")
            )
            for i in range(users)
        ]
        conn = self.azurite.connection_string
        state = StateStore(AzureStateTables.from_connection_string(conn), prefix="b" + uuid.uuid4().hex[:10])
        name = f"bench-{uuid.uuid4().hex[:8]}"
        queue = AzureTaskQueue.from_connection_string(conn, name)
        poison = AzureTaskQueue.from_connection_string(conn, poison_queue_name(name))
        settings = EngineSettings(
            allow_create_lookup=True, link=LinkSettings(page_size=5000, write_batch=1000)
        )
        worker = Worker(
            client=clients[0], state=state, queue=queue, settings=settings, write_clients=clients[1:]
        )

        def handle(delivery: Delivery) -> None:
            worker.handle(delivery.text)

        driver = QueueDriver(
            queue, poison, handle, on_poison=lambda d, r: worker.handle_poison(d.text, d.dequeue_count)
        )
        return worker, state, queue, driver

    def measure(self, scenario: str, users: int, run: Any, *, per: int | None = None) -> Measure:
        """Run one scenario and read the emulator's counters.

        Request counts are per 1,000 of ``per`` rows: the table's rows for full and no-change passes,
        the rows written otherwise.
        """
        self.emulator.reset_stats()
        pids = {"emulator": self.process.pid, "azurite": self.azurite.pid or 0, "worker": os.getpid()}
        cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        with Sampler(self.emulator, self.time_factor) as sampler:
            run()
        real = time.monotonic() - started
        emulated = real / self.time_factor
        cpu_share = {name: round((_cpu_seconds(pid) - cpu[name]) / real, 2) for name, pid in pids.items()}
        stats = self.emulator.stats()
        written = sum(stats["rows_written"].values())
        requests = dict(stats["requests"])
        total = sum(requests.values())
        throttled = dict(stats.get("throttled", {}))
        charged = sum(stats.get("execution_seconds", {}).values())
        rows = max(per if per is not None else written, 1)
        return Measure(
            scenario=scenario,
            users=users,
            rows=self.rows,
            written=written,
            emulated_seconds=round(emulated, 1),
            rows_per_second=round(written / emulated, 1) if emulated else 0.0,
            requests=requests,
            requests_per_1000_rows=round(total * 1000 / rows, 2),
            requests_by_kind_per_1000_rows={k: round(v * 1000 / rows, 2) for k, v in requests.items()},
            throttled=throttled,
            throttled_share=round(sum(throttled.values()) / max(total, 1), 4),
            ceiling_share=round(charged / (CEILING * users * emulated), 3) if emulated else 0.0,
            cpu_share=cpu_share,
            timeline=sampler.points,
        )

    def scenarios(self, users: int) -> list[Measure]:
        """Full pass, re-unify 1 % + incremental pass, no-change pass."""
        self.reset()
        _, state, queue, driver = self.worker(users)

        def run(**options: bool) -> None:
            start_run(state, queue, SOURCES, now=datetime.now(UTC), trigger="bench", **options)
            driver.drain(idle_timeout=30)

        results = [self.measure("full pass", users, run, per=self.rows)]
        self.emulator.reunify(0.01, seed=2)
        self.emulator.advance_clock(16 * 60)
        results.append(self.measure("incremental after 1 % re-unify", users, run))
        self.emulator.advance_clock(16 * 60)
        results.append(self.measure("no change", users, run, per=self.rows))
        return results

    def naive(self, sample: int) -> Measure:
        """One PATCH per row, sequential, one user: the baseline."""
        self.reset()
        session = self.emulator.web_api("naive")
        links = self.emulator.links("contact", rows="none")
        assert links["summary"]["rows"] >= sample
        rows = session.get(
            "msdynci_alternatekeys?$select=msdynci_alternatevalue,_msdynci_lookupfield_customer_value"
            "&$filter=msdynci_datasourcename eq 'DataverseSales' and msdynci_entityname eq 'contact'",
            headers={"Prefer": f"odata.maxpagesize={sample}"},
        ).json()["value"]
        client = DataverseClient(
            organization_url=self.url, tokens=token_provider(self.url, development_user="naive")
        )
        from hydration.dataverse.metadata import LookupSpec, Metadata

        lookup = Metadata(client).ensure_lookup("contact", LookupSpec(), allow_create=True)

        def run() -> None:
            for row in rows:
                source = row["msdynci_alternatevalue"].lower()
                profile = row["_msdynci_lookupfield_customer_value"]
                try:
                    client.request(
                        "PATCH",
                        f"contacts({source})",
                        kind="patch",
                        json_body={
                            f"{lookup.navigation_property}@odata.bind": f"msdynci_customerprofiles({profile})"
                        },
                        headers={"If-Match": "*"},
                    )
                except NotFoundError:
                    continue  # a mapping row whose source row was deleted: the naive writer pays for it too

        return self.measure("naive: one PATCH per row", 1, run)


def _table(results: list[Measure], rss: float) -> str:
    columns = [("scenario", 34), ("users", 5), ("written", 9), ("rows/s", 8), ("req/1k", 7), ("429s", 5)]
    head = (
        " ".join(f"{name:{'<' if width == 34 else '>'}{width}}" for name, width in columns)
        + f" {'ceiling':>8} {'emulator CPU':>12}"
    )
    lines = [head, "-" * len(head)]
    for m in results:
        lines.append(
            f"{m.scenario:34} {m.users:>5} {m.written:>9} {m.rows_per_second:>8} "
            f"{m.requests_per_1000_rows:>7} {sum(m.throttled.values()):>5} {m.ceiling_share:>8.0%}"
            f" {m.cpu_share.get('emulator', 0.0):>12.0%}"
        )
    lines.append(f"peak RSS of the worker process: {rss:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "200000")))
    parser.add_argument("--users", default=os.environ.get("BENCH_USERS", "1,2,4"))
    parser.add_argument("--time-factor", type=float, default=float(os.environ.get("BENCH_TIME_FACTOR", "1")))
    parser.add_argument(
        "--naive-sample", type=int, default=500, help="rows of the naive baseline (0: skip it)"
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args(argv)
    results: list[Measure] = []
    with Azurite() as azurite:
        bench = Bench(args.rows, args.time_factor, azurite)
        try:
            for users in (int(u) for u in args.users.split(",")):
                results += bench.scenarios(users)
                print(_table(results, _rss_mb()), flush=True)
            if args.naive_sample > 0:
                results.append(bench.naive(min(args.naive_sample, args.rows)))
        finally:
            bench.close()
    rss = _rss_mb()
    print(_table(results, rss))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "rows": args.rows,
        "time_factor": args.time_factor,
        "peak_rss_mb": round(rss, 1),
        "measured_at": datetime.now(UTC).isoformat(),
        "results": [asdict(m) for m in results],
    }
    output.write_text(json.dumps(document, indent=2))
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
