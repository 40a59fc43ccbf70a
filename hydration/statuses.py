"""The statuses of runs and tasks, as users read them in the status page, the CLI and Table Storage."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A run's or a task's status; the values are what is stored and shown."""

    QUEUED = "Queued"
    """A task whose first step waits in the queue."""
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    HELD = "Held"
    """A task whose pass would change too many existing links: nothing was written, and it waits for
    an operator's approval (``python -m hydration approve RUN``) to go on live."""


FINAL = (Status.SUCCESSFUL, Status.FAILED, Status.SKIPPED)
"""Task and run statuses after which nothing changes."""
SETTLED = (*FINAL, Status.HELD)
"""Statuses after which nothing changes unless an operator acts: a held task waits, it is not final."""
