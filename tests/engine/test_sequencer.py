"""The sequencer on fakes and a fake clock: read → decide → write → commit, in milliseconds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hydration.checkpoints import Checkpoint, Counters, PageOutcome, Phase, start_pass
from hydration.clock import FakeClock
from hydration.decision import LinkColumns, PageKind, Snapshot
from hydration.link_writes import DryRunWriter, Landed
from hydration.readers import Page, Prefetched
from hydration.sequencer import Sequencer, StepLimits
from hydration.storage.errors import ConflictError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN = "20260101T000000Z-0123abcd"
LINK = "_msdynci_lookupfield_customerprofile_value"
P1 = "20000000-0000-0000-0000-000000000001"


def source_id(i: int) -> str:
    return f"10000000-0000-0000-0000-{i:012d}"


class ScriptedReader:
    """Pages of one row each, ``sizes`` rows per page (short pages), the server saying more until the last."""

    def __init__(self, phase: Phase, pages: int, clock: FakeClock, seconds_per_page: float = 0.0) -> None:
        self.phase, self.pages, self.clock, self.seconds = phase, pages, clock, seconds_per_page
        self.read_at: list[str | None] = []

    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        self.read_at.append(checkpoint.cursor)
        done = len(self.read_at)
        self.clock.advance(self.seconds)
        ids = [source_id(done)]
        snapshot = Snapshot(
            sources={ids[0]: {"contactid": ids[0], LINK: None}},
            mapping={
                ids[0]: [
                    {
                        "msdynci_alternatekeyid": source_id(900 + done),
                        "_msdynci_lookupfield_customer_value": P1,
                    }
                ]
            },
            profiles={P1: None},
        )
        outcome = PageOutcome(self.phase, f"k-{done:03d}", more=done < self.pages)
        return Page(PageKind(self.phase), ids, outcome, Counters(pages=1, rows_read=1), snapshot=snapshot)


class EmptyRetryList:
    def read(self, checkpoint: Checkpoint, first: Prefetched | None) -> Page:
        return Page(PageKind.RETRY, [], PageOutcome(Phase.RETRY, None, False), Counters())


class MemoryBook:
    """Checkpoints in memory with ETags; ``meddle`` saves on another's behalf before our next save."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.stored, self.etag, self.saves = checkpoint, 0, 0
        self.meddle: list[Callable[[Checkpoint], Checkpoint] | None] = []
        self.recorded: list[Landed] = []

    def load(self, table: str) -> tuple[Checkpoint, str]:
        return self.stored, str(self.etag)

    def save(self, checkpoint: Checkpoint, etag: str) -> str:
        meddle = self.meddle.pop(0) if self.meddle else None
        if meddle is not None:
            self.stored, self.etag = meddle(self.stored), self.etag + 1
        if etag != str(self.etag):
            raise ConflictError("the ETag changed")
        self.stored, self.etag, self.saves = checkpoint, self.etag + 1, self.saves + 1
        return str(self.etag)

    def record(self, table: str, landed: Landed, *, resolve: bool, now: datetime) -> None:
        self.recorded.append(landed)


def sequencer(
    book: MemoryBook,
    clock: FakeClock,
    mapping: ScriptedReader,
    *,
    pages: int | None = None,
    seconds: float = 120,
) -> Sequencer:
    return Sequencer(
        readers={Phase.RETRY: EmptyRetryList(), Phase.MAPPING: mapping},
        writer=DryRunWriter(clear_stale=True),
        book=book,
        columns=LinkColumns(LINK),
        limits=StepLimits(seconds=seconds, pages=pages, read_ahead=2, users=1),
        clock=clock,
        owner="w1",
        rerun_end=lambda: clock.now() - timedelta(minutes=15),
    )


def run_step(seq: Sequencer, checkpoint: Checkpoint, etag: str) -> tuple[Checkpoint, str]:
    done = seq.run(checkpoint, etag)
    assert done is not None, "the step was taken over"
    return done


def started() -> Checkpoint:
    cp = Checkpoint(table="contact", watermark=T0 - timedelta(days=1), manifest_hash="h")
    return start_pass(cp, run_id=RUN, owner="w1", now=T0, end=T0, full=False)


def test_a_step_reads_on_through_short_pages_until_the_server_says_nothing_follows() -> None:
    clock = FakeClock(T0)
    book, mapping = MemoryBook(started()), ScriptedReader(Phase.MAPPING, pages=7, clock=clock)
    done = sequencer(book, clock, mapping).run(book.stored, "0")
    assert done is not None
    checkpoint, _ = done
    assert mapping.read_at == [None, *(f"k-{i:03d}" for i in range(1, 7))]
    assert checkpoint.phase is Phase.DONE
    assert checkpoint.seq == 1
    assert checkpoint.watermark == T0  # moved only once the server said the window was read
    assert checkpoint.counters == Counters(pages=7, rows_read=7, written=7)
    assert book.saves == 7  # one checkpoint per page


def test_a_step_stops_at_its_page_budget_and_the_next_step_resumes_after_the_cursor() -> None:
    clock = FakeClock(T0)
    book, mapping = MemoryBook(started()), ScriptedReader(Phase.MAPPING, pages=5, clock=clock)
    checkpoint, etag = run_step(sequencer(book, clock, mapping, pages=2), book.stored, "0")
    assert (checkpoint.phase, checkpoint.cursor, checkpoint.seq) == (Phase.MAPPING, "k-002", 1)
    checkpoint, _ = run_step(sequencer(book, clock, mapping), checkpoint, etag)
    assert not checkpoint.active
    assert checkpoint.counters.pages == 5


def test_a_step_stops_at_its_time_budget_on_the_injected_clock() -> None:
    clock = FakeClock(T0)
    book, mapping = (
        MemoryBook(started()),
        ScriptedReader(Phase.MAPPING, pages=50, clock=clock, seconds_per_page=30),
    )
    checkpoint, _ = run_step(sequencer(book, clock, mapping, seconds=100), book.stored, "0")
    assert checkpoint.counters.pages == 4  # 30 s a page: the fourth page starts before 100 s have passed
    assert checkpoint.active


def test_a_rerun_request_saved_mid_step_is_merged_and_the_pass_carries_on_into_the_rerun() -> None:
    clock = FakeClock(T0 + timedelta(hours=1))
    book, mapping = MemoryBook(started()), ScriptedReader(Phase.MAPPING, pages=3, clock=clock)
    book.meddle = [None, lambda cp: replace(cp, rerun_requested=True)]
    checkpoint, _ = run_step(sequencer(book, clock, mapping), book.stored, "0")
    assert mapping.read_at == [None, "k-001", "k-002"]
    assert checkpoint.active
    assert checkpoint.phase is Phase.RETRY
    assert checkpoint.window_start == T0
    assert checkpoint.window_end == clock.now() - timedelta(minutes=15)
    assert (checkpoint.seq, checkpoint.sent_seq) == (1, 0)
    assert book.stored == checkpoint


def test_another_copy_taking_the_step_over_stops_this_one() -> None:
    clock = FakeClock(T0)
    book, mapping = MemoryBook(started()), ScriptedReader(Phase.MAPPING, pages=3, clock=clock)
    book.meddle = [lambda cp: replace(cp, lease_renewed=T0 + timedelta(seconds=5))]
    assert sequencer(book, clock, mapping).run(book.stored, "0") is None
