"""A worker process for the SIGKILL case: the app's queue handlers draining one queue, as a host would.

``python -m tests.faults.worker_loop <queue>`` builds the app's services from the environment, as a
Functions instance does, and drains the named job queue with a 2-second message lease, so a message it
holds when it is killed becomes visible again two seconds later (the host's lease would be minutes).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from hydration.local_run import local_driver
from hydration.service import Services
from hydration.settings import Settings
from hydration.storage.queues import AzureTaskQueue, poison_queue_name


def main(queue_name: str) -> None:
    """Drain the queue until it stays empty."""
    settings = Settings.from_env(os.environ)
    svc = Services.from_settings(settings)
    connection = os.environ["HYDRATION_STORAGE"]
    svc = replace(
        svc,
        queue=AzureTaskQueue.from_connection_string(connection, queue_name),
        poison=AzureTaskQueue.from_connection_string(connection, poison_queue_name(queue_name)),
    )
    local_driver(svc, visibility_timeout=0, lease_seconds=2).drain(idle_timeout=30)


if __name__ == "__main__":
    main(sys.argv[1])
