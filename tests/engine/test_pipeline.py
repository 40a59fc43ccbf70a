"""Steps of several pages, the next page read while the previous page's writes are in flight.

Against the emulator over HTTP, like ``test_hydration``: every end state is checked row by row against
the emulator's truth, and every write counted by the emulator. Nothing here is timed: the overlap of
reads and writes, the per-user cap and the request costs are counted. What is tested is the engine's
paging, checkpoints and redelivery, not storage, so state and queue are in memory (the storage
contract tests hold them to Azurite's semantics; ``test_hydration`` keeps the crash on Azurite).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from dataverse_emulator.client import EmulatorClient
from hydration.checkpoints import Checkpoint
from hydration.dataverse.client import ClientSettings
from hydration.link_settings import LinkSettings
from hydration.state import StateStore
from hydration.worker import Outcome
from tests.engine.harness import CONTACT_SOURCES, Harness, unavailable

pytestmark = pytest.mark.integration
CONTACTS = {"contact": CONTACT_SOURCES}


def all_correct(summary: dict[str, int]) -> bool:
    return summary["correct"] == summary["rows"] and summary["pending"] == 0


class RecordingState(StateStore):
    """The real state store, remembering every checkpoint saved."""

    def __init__(self, inner: StateStore) -> None:
        super().__init__(inner.tables, prefix=inner.runs_table.removesuffix("runs"))
        self.saved: list[Checkpoint] = []

    def save_checkpoint(self, checkpoint: Checkpoint, etag: str, *, plan: bool = False) -> str:
        etag = super().save_checkpoint(checkpoint, etag, plan=plan)
        self.saved.append(checkpoint)
        return etag


class OverlapSession(requests.Session):
    """A real session counting the batched reads sent while a bulk write of the same worker is in flight."""

    lock = threading.Lock()
    writes_in_flight = 0
    reads = 0
    overlapped = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        cls = OverlapSession
        write = method == "POST" and "UpdateMultiple" in str(url)
        body = kwargs.get("data") or b""
        # a mapping page's read: its $batch reads the source rows' links by key
        read = method == "POST" and str(url).endswith("$batch") and b"PropertyName='contactid'" in body
        with cls.lock:
            if write:
                cls.writes_in_flight += 1
            if read:
                cls.reads += 1
                cls.overlapped += cls.writes_in_flight > 0
        try:
            return super().request(method, url, *args, **kwargs)
        finally:
            if write:
                with cls.lock:
                    cls.writes_in_flight -= 1


def pipelined(**overrides: Any) -> LinkSettings:
    """Small pages, so a table of a few hundred rows is many pages and many write batches."""
    values: dict[str, Any] = {"page_size": 100, "write_batch": 20, "step_pages": 4, "read_ahead": 1}
    values.update(overrides)
    return LinkSettings(**values)


OVERLAP_PAGES = {"page_size": 500, "write_batch": 100}
"""The overlap tests' pages: writes of a hundred records take long enough in the emulator's model to be
in flight when the next read goes (smaller writes could land first and prove nothing)."""


def test_a_step_covers_several_pages_saving_the_checkpoint_after_each(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=600, leads=0, seed=21)
    harness = Harness(emulator, None, link=pipelined())
    recording = RecordingState(harness.state)
    harness.worker = harness._worker(recording)
    expected = harness.summary("contact")["expected_links"]

    _, tasks, drained = harness.run(tables=CONTACTS)

    assert tasks["contact"].status == "Successful"
    assert drained.failed == drained.poisoned == 0
    assert all_correct(harness.summary("contact"))
    assert harness.written() == {"contact": expected}  # every row written once, none twice
    pages = tasks["contact"].counters["pages"]
    steps = harness.state.checkpoint("contact").value.seq
    assert steps == harness.outcomes[Outcome.DONE] == -(-pages // 4)  # four pages a step
    # a save after every page's writes landed, one page further each time (between them, only the
    # claim of a step and the mark that its continuation was sent, which move no page)
    counts = [c.counters.pages for c in recording.saved]
    moved = [b for a, b in zip([0, *counts], counts, strict=False) if b != a]
    assert moved == list(range(1, pages + 1))
    written = [c.counters.written for c in recording.saved]
    assert written == sorted(written)
    assert written[-1] == expected


def test_the_next_page_is_read_while_the_previous_pages_writes_are_in_flight(
    emulator: EmulatorClient,
) -> None:
    emulator.reset(contacts=3000, leads=0, seed=22)
    emulator.limits(enabled=True, time_factor=0.02)  # writes take a modelled time; reads are short
    OverlapSession.reads = OverlapSession.overlapped = OverlapSession.writes_in_flight = 0
    # Full pages: a short page's few writes may land before the next read goes, which says nothing of
    # the pipeline.
    harness = Harness(
        emulator,
        None,
        link=pipelined(step_pages=None, **OVERLAP_PAGES),
        session_factory=OverlapSession,
        full_pages=True,
    )
    expected = harness.summary("contact")["expected_links"]

    harness.run(tables=CONTACTS)

    assert all_correct(harness.summary("contact"))
    assert harness.written() == {"contact": expected}
    reads = OverlapSession.reads
    assert reads >= 6
    # every mapping page's read after the first is sent while an earlier page is being written
    assert OverlapSession.overlapped >= reads - 2, (OverlapSession.overlapped, reads)
    assert sum(emulator.stats()["throttled"].values()) == 0


def test_without_read_ahead_no_read_overlaps_a_write(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=1500, leads=0, seed=22)
    emulator.limits(enabled=True, time_factor=0.02)
    OverlapSession.reads = OverlapSession.overlapped = OverlapSession.writes_in_flight = 0
    harness = Harness(
        emulator,
        None,
        link=pipelined(step_pages=None, read_ahead=0, **OVERLAP_PAGES),
        session_factory=OverlapSession,
    )
    harness.run(tables=CONTACTS)
    assert all_correct(harness.summary("contact"))
    assert OverlapSession.reads >= 3
    assert OverlapSession.overlapped == 0


@pytest.mark.parametrize("page", [2, 5])
def test_a_crash_in_the_middle_of_a_step_loses_at_most_the_pages_in_flight(
    emulator: EmulatorClient, page: int
) -> None:
    emulator.reset(contacts=600, leads=0, seed=23)
    harness = Harness(emulator, None, link=pipelined(step_pages=8))
    expected = harness.summary("contact")["expected_links"]
    # crash just before saving the checkpoint after page `page`: its writes (and the next page's) landed
    harness.crash_state(lambda cp: cp.counters.pages == page and cp.phase != "idle")

    _, tasks, drained = harness.run(tables=CONTACTS)

    assert drained.failed == 1
    assert drained.poisoned == 0
    assert tasks["contact"].status == "Successful"
    assert all_correct(harness.summary("contact"))
    assert harness.written() == {"contact": expected}  # the redone pages found their rows written
    assert tasks["contact"].counters["written"] + tasks["contact"].counters["already_correct"] >= expected
    assert harness.state.retry_count("contact") == 0
    assert harness.queue.approximate_count() == 0


def test_every_message_delivered_twice_with_multi_page_steps(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=500, leads=0, seed=24)
    harness = Harness(emulator, None, link=pipelined(step_pages=3))
    expected = harness.summary("contact")["expected_links"]
    harness.queue.duplicate = True

    _, tasks, drained = harness.run(tables=CONTACTS)

    assert drained.poisoned == 0
    assert tasks["contact"].status == "Successful"
    assert all_correct(harness.summary("contact"))
    assert harness.written() == {"contact": expected}
    assert tasks["contact"].counters["written"] == expected


def test_reunify_then_incremental_and_full_pass_with_pipelined_steps(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=500, leads=0, seed=25)
    harness = Harness(emulator, None, link=pipelined(step_pages=None))
    harness.run(tables=CONTACTS)
    harness.em.reunify(0.03, seed=4)
    harness.settle()
    before = harness.summary("contact")
    harness.em.reset_stats()
    _, tasks, _ = harness.run(tables=CONTACTS)
    assert harness.written().get("contact", 0) == before["missing"] + before["wrong"]
    _, tasks, _ = harness.run(tables=CONTACTS, full=True)
    assert all_correct(harness.summary("contact"))
    assert tasks["contact"].counters["cleared"] == before["stale"]


def test_plan_with_read_ahead_reports_exactly_what_the_pipelined_pass_writes(
    emulator: EmulatorClient,
) -> None:
    emulator.reset(contacts=500, leads=0, seed=26)
    harness = Harness(emulator, None, link=pipelined(step_pages=None))
    _, planned, _ = harness.run(tables=CONTACTS, plan=True)
    assert harness.written() == {}
    _, real, _ = harness.run(tables=CONTACTS)
    assert real["contact"].counters["written"] == planned["contact"].counters["written"]
    assert harness.written() == {"contact": planned["contact"].counters["written"]}


def test_requests_in_flight_per_user_stay_under_the_cap(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=600, leads=0, seed=27)
    # the emulator refuses a fourth concurrent request of a user: two writes in flight at most, and a
    # read that borrows the next slot to free
    emulator.limits(enabled=True, time_factor=0.02, max_concurrent=3)
    harness = Harness(emulator, None, link=pipelined(step_pages=None, max_in_flight=2), write_users=["app-2"])
    expected = harness.summary("contact")["expected_links"]

    harness.run(tables=CONTACTS)

    stats = emulator.stats()
    assert stats["throttled"].get("concurrency", 0) == 0
    assert all_correct(harness.summary("contact"))
    assert harness.written() == {"contact": expected}
    per_user = stats["per_user"]
    assert per_user["app"]["rows_written"] > 0
    assert per_user["app-2"]["rows_written"] > 0


PAGE = 150


def test_a_mapping_page_costs_one_read_request_and_a_reconcile_page_two(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=900, leads=0, seed=28)
    # Full pages: this counts requests per page, and short pages only add pages.
    harness = Harness(emulator, None, link=LinkSettings(page_size=PAGE, write_batch=PAGE), full_pages=True)
    _, tasks, _ = harness.run(tables=CONTACTS)
    summary = harness.summary("contact")
    assert all_correct(summary)
    requests_made = emulator.stats()["requests"]
    counters = tasks["contact"].counters
    assert counters["pages"] >= 12
    # the step covered the pass: one query for whether the table supports UpdateMultiple and the first
    # mapping page (every later mapping page came in the $batch that read the page before it), then the
    # reconcile's pages, each its own query so that checking one page never holds up reading the next
    assert harness.outcomes[Outcome.DONE] == 1
    reconcile_pages = requests_made["query"] - 2
    linked_pages = -(-summary["expected_links"] // PAGE)
    assert linked_pages <= reconcile_pages <= linked_pages + 1, requests_made
    # one $batch per page; a second only where a winner names a profile the page did not (a conflict)
    assert requests_made["batch"] <= counters["pages"] + counters["conflicts"], requests_made
    written = counters["written"]
    assert requests_made["update_multiple"] <= -(-written // PAGE) + counters["pages"]


class FailingCheckSession(requests.Session):
    """A real session whose second reconcile check answers 503 once.

    A reconcile check is a ``$batch`` that does not read source rows by key; failing one is a transient
    failure in a page decided in the background.
    """

    lock = threading.Lock()
    armed = False
    checks = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = kwargs.get("data") or b""
        check = str(url).endswith("$batch") and b"PropertyName='contactid'" not in body
        if FailingCheckSession.armed and method == "POST" and check:
            with FailingCheckSession.lock:
                FailingCheckSession.checks += 1
                fail = FailingCheckSession.checks == 2
            if fail:
                return unavailable()
        return super().request(method, url, *args, **kwargs)


def test_a_reconcile_page_that_fails_in_the_background_fails_the_step_and_is_redone(
    emulator: EmulatorClient,
) -> None:
    emulator.reset(contacts=600, leads=0, seed=29)
    FailingCheckSession.armed, FailingCheckSession.checks = False, 0
    harness = Harness(
        emulator,
        None,
        link=pipelined(step_pages=None, read_ahead=2),
        client_settings=ClientSettings(max_retries=0),
        session_factory=FailingCheckSession,
    )
    harness.run(tables=CONTACTS)
    harness.em.reunify(0.05, seed=5)
    harness.settle()
    stale = harness.summary("contact")["stale"]
    assert stale > 0
    FailingCheckSession.armed = True

    _, tasks, drained = harness.run(tables=CONTACTS, full=True)

    assert FailingCheckSession.checks > 2  # the reconcile went on after the failure
    assert drained.failed == 1  # the step stopped at the error; its redelivery resumed
    assert drained.poisoned == 0
    assert tasks["contact"].status == "Successful"
    assert all_correct(harness.summary("contact"))
    assert tasks["contact"].counters["cleared"] >= stale
