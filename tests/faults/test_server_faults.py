"""The fault matrix, part one: a broken or hostile server during a run, through the app's handlers.

Each case is one shape: set the emulator's fault rules, run through the planner and the queue handlers,
check the recorded outcome (run and task status, details, counts, poison queue), then check every row
against the emulator's truth. Where a fault must fail the run (throttling forever), the next run
resumes and ends correct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hydration.storage.queues import MAX_DELAY_SECONDS

from .scene import Scene

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ServerFault:
    """One row of the matrix: the rules, how the scene is set up, and what the run must record."""

    rules: list[dict[str, Any]]
    seed: int = 0
    scene: dict[str, Any] = field(default_factory=dict)
    status: str = "Successful"
    details: str = ""
    """Words the failed task's details must hold."""
    min_fired: int = 1
    throttled_seconds: float | None = None
    """The throttled seconds the run must record, when the case decides them."""


CASES = {
    "5xx bursts": ServerFault(
        [
            {"kind": "error", "status": 503, "nth": 4, "count": 3},
            {"kind": "error", "status": 500, "rate": 0.15},
            {"kind": "error", "status": 502, "rate": 0.05, "method": "POST", "after": True},
        ],
        seed=11,
        min_fired=5,
    ),
    "dropped connections": ServerFault(
        [{"kind": "drop", "rate": 0.08}, {"kind": "drop", "rate": 0.1, "method": "POST", "after": True}],
        seed=5,
        min_fired=3,
    ),
    "429 storm with growing Retry-After": ServerFault(
        [
            {"kind": "throttle", "retry_after": 1, "nth": 3, "count": 3},
            {"kind": "throttle", "retry_after": 4, "nth": 8, "count": 3},
            {"kind": "throttle", "retry_after": 15, "nth": 14, "count": 2},
            {"kind": "throttle", "retry_after": 60, "nth": 20, "count": 2},  # past the in-process limit
            {"kind": "throttle", "retry_after": 300, "nth": 26, "count": 1},
        ],
        scene={"memory_queues": True, "memory_state": True},
        min_fired=11,
    ),
    "Retry-After beyond the queue's 7-day limit": ServerFault(
        [{"kind": "throttle", "retry_after": 10 * MAX_DELAY_SECONDS, "nth": 6, "count": 1}],
        scene={
            "memory_queues": True,
            "memory_state": True,
            "env": {"HYDRATION_MAX_THROTTLE_DELAY_SECONDS": str(MAX_DELAY_SECONDS)},
        },
        throttled_seconds=MAX_DELAY_SECONDS,
    ),
    "answers slower than the client timeout": ServerFault(
        [
            {"kind": "slow", "delay_seconds": 40, "nth": 5, "count": 2},
            {"kind": "slow", "delay_seconds": 40, "method": "POST", "path": "UpdateMultiple$", "nth": 2},
        ],
        scene={"client_timeout": 0.2},
        min_fired=3,
    ),
    "short pages of every size": ServerFault([], scene={"page_size": 12}, min_fired=0),
    "throttling forever": ServerFault(
        [{"kind": "throttle", "retry_after": 0, "nth": 12, "count": 10_000}],
        scene={"memory_queues": True, "memory_state": True, "env": {"HYDRATION_MAX_THROTTLED_REQUEUES": "2"}},
        status="Failed",
        details="throttled 2 times in a row",
        min_fired=10,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_run_through_server_faults(name: str, scene: Callable[..., Scene]) -> None:
    case = CASES[name]
    s = scene(**case.scene)
    if name == "answers slower than the client timeout":
        s.emulator.limits(time_factor=0.01)  # 40 server seconds are 0.4 s: twice the client's timeout
    run_id = s.start()
    s.inject(case.rules, seed=case.seed)
    view = s.drain(run_id)
    fired = s.clear_faults()

    assert fired >= case.min_fired, s.emulator.faults()
    assert view["status"] == case.status, view
    assert s.svc.poison.approximate_count() == 0  # neither throttling nor a transient error poisons
    if case.throttled_seconds is not None:
        assert view["throttledSeconds"] == case.throttled_seconds
    if case.status == "Failed":
        failed = [t for t in view["tables"] if t["status"] == "Failed"]
        assert failed
        assert all(case.details in t["details"] for t in failed), failed
        assert all(not s.svc.state.checkpoint(t["table"]).value.active for t in failed)  # released
        s.untouched()
        view = s.run()  # the next run resumes
        assert view["status"] == "Successful", view
    s.verify()
