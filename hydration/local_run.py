"""Running a run's queue here, as the Functions host would: what ``run``, ``plan`` and ``retry-failed`` do.

The local driver pumps the job queue into the same worker and poison handlers the queue functions
call, with the host's queue settings from ``host.json`` (dequeue count, retry delay), and reports the
run's progress after every step to a ``RunProgress`` (``run_progress``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from . import handlers
from .planner import RunRequest
from .relink_rule import approve_hint
from .run_progress import RunProgress, progress_for
from .service import Services
from .status import run_view
from .status_text import render
from .statuses import FINAL, SETTLED, Status
from .storage.driver import Delivery, QueueDriver

EXIT: dict[str, int] = {Status.SUCCESSFUL: 0, Status.FAILED: 1, Status.SKIPPED: 3, Status.HELD: 6}
"""A settled run status's exit code (any other status, e.g. one added later, exits 1)."""
NOTHING_HELD_EXIT = 7
"""``approve`` of a run that has nothing held."""
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


def drain_run(
    svc: Services,
    run_id: str,
    *,
    out: TextIO,
    poll: float = 0.5,
    driver: QueueDriver | None = None,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """Process queue messages until the run is final or held; returns the run's status view.

    ``progress`` sees the run's view after every step (default: plain lines on ``out``).
    """
    driver = driver or local_driver(svc)
    progress = progress or progress_for(out, tty=False)
    try:
        while True:
            record = svc.state.run(run_id) or {"run_id": run_id}
            view = run_view(svc.state, record, now=svc.clock.now())
            progress.update(view)
            if view["status"] in SETTLED:
                return view
            if driver.step() is None:
                driver.clock.sleep(poll)  # a delayed continuation (throttling) or another consumer's lease
    finally:
        progress.close()


def start_and_drain(svc: Services, request: RunRequest, out: TextIO, *, tty: bool | None = None) -> int:
    """Start a run, process it here with progress (bars on a terminal), and return its exit code."""
    started = svc.planner().start(request)
    out.write(f"run {started.run_id}: {started.status.lower()}")
    out.write(f", queued {', '.join(started.queued)}" if started.queued else "")
    out.write("\n")
    for table, reason in started.skipped.items():
        out.write(f"  {table}: skipped: {reason}\n")
    if started.status in FINAL:
        if started.details:
            out.write(f"  {started.details}\n")
        return EXIT.get(started.status, 1)
    return follow(svc, started.run_id, out, tty=tty)


def follow(svc: Services, run_id: str, out: TextIO, *, tty: bool | None = None) -> int:
    """Process the run here until it is final or held, print its status, and return its exit code."""
    view = drain_run(svc, run_id, out=out, progress=progress_for(out, tty=tty))
    out.write("\n" + render({"runs": [view]}) + "\n")
    if view["status"] == Status.HELD:
        out.write(f"\nheld: nothing was written to the held tables; to go on: {approve_hint(run_id)}\n")
    return EXIT.get(view["status"], 1)
