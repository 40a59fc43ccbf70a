"""Property: whatever happens between them, a full pass leaves every row as the truth says.

Hypothesis draws sequences of re-unifications (the emulator's control API changes the mapping as CI-D
would), server faults and runs (incremental, full, dry run), on a small scene through the app's
handlers. Whatever a sequence did, and however its runs ended, one clean full pass afterwards (approved,
so the relink guard cannot hold it) must leave every row exactly as the emulator's truth says.
Derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient

from .scene import CaseRecord, Ledger, Scene

pytestmark = pytest.mark.integration

FAULTS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "5xx": [{"kind": "error", "status": 503, "rate": 0.2}],
    "drops after writes": [{"kind": "drop", "method": "POST", "rate": 0.3, "after": True}],
    "429s": [{"kind": "throttle", "retry_after": 2, "rate": 0.2}],
}
ACTIONS = st.one_of(
    st.tuples(st.just("reunify"), st.floats(0.02, 0.3), st.integers(0, 99)),
    st.tuples(
        st.just("run"), st.sampled_from(["incremental", "full", "plan"]), st.sampled_from(list(FAULTS))
    ),
)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(ACTIONS, min_size=1, max_size=3))
def test_a_full_pass_after_any_sequence_leaves_every_row_true(
    actions: list[tuple[str, Any, Any]], emulator_server: EmulatorServer, azurite: str, ledger: Ledger
) -> None:
    record = CaseRecord(f"sequence {actions}")
    emulator = EmulatorClient(emulator_server.base_url)
    s = Scene(emulator, azurite, record, memory_queues=True, memory_state=True, rows=(40, 20), page_size=10)
    try:
        for action in actions:
            if action[0] == "reunify":
                emulator.reunify(fraction=action[1], seed=action[2])
                emulator.advance_clock(16 * 60)
                s.count(1)
                continue
            _, kind, fault = action
            s.inject(FAULTS[fault], seed=len(record.case))
            written = emulator.stats().get("rows_written", {})
            view = s.run(full=kind == "full", plan=kind == "plan")
            s.clear_faults()
            # a re-unification that moves more than a fifth of a table's links is held by the relink
            # guard; the table then stays held (later runs record it Skipped) until the final pass
            assert view["status"] in ("Successful", "Failed", "Held", "Skipped"), view
            if kind == "plan":
                assert emulator.stats().get("rows_written", {}) == written  # a dry run writes nothing
        assert s.run(full=True, approve=True)["status"] == "Successful"  # takes over a held table
        s.verify()
    finally:
        emulator.clear_faults()
        ledger.cases.append(record)
