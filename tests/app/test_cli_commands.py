"""The operator's commands around a run: progress bars, ``status --watch``, ``history``, ``retry-failed``.

Each runs against the emulator and Azurite. The terminal paths draw through ``rich`` into a
``StringIO`` told it is a terminal; the plain paths are what a log or a pipe receives.
"""

from __future__ import annotations

import io
import re
from datetime import datetime

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.cli import main
from hydration.clock import SystemClock
from hydration.local_run import start_and_drain
from hydration.planner import RunRequest
from hydration.run_progress import BarProgress, PlainProgress, progress_for
from hydration.service import Services
from hydration.settings import Settings
from hydration.status_watch import watch
from hydration.storage.driver import QueueDriver

from .conftest import assert_all_correct, one_page_steps, queue_driver

pytestmark = pytest.mark.integration
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), env=env, out=out)
    return code, out.getvalue()


class QueueMovingClock(SystemClock):
    """The real clock, except that each wait lets another consumer process a few queue messages.

    ``status --watch`` waits between rounds while the run goes on elsewhere (the Functions host); this
    clock stands for that elsewhere, so the watch sees the run move and end without a thread.
    """

    def __init__(self, driver: QueueDriver, steps: int = 3) -> None:
        self.driver = driver
        self.steps = steps
        self.waits = 0

    def sleep(self, seconds: float) -> None:
        """Instead of waiting, move the run on."""
        self.waits += 1
        for _ in range(self.steps):
            self.driver.step()


def watcher(env: dict[str, str], worker: Services) -> tuple[Services, QueueMovingClock]:
    clock = QueueMovingClock(queue_driver(worker))
    return Services.from_settings(Settings.from_env(env), clock=clock), clock


# -- run and plan: bars on a terminal, lines elsewhere ------------------------------------------------


def test_run_on_a_terminal_draws_a_bar_per_table(app_env: dict[str, str], emulator: EmulatorClient) -> None:
    svc = one_page_steps(app_env)
    out = io.StringIO()
    code = start_and_drain(svc, RunRequest(trigger="cli"), out, tty=True)
    assert code == 0
    assert_all_correct(emulator)
    text = out.getvalue()
    assert ANSI.search(text), "a terminal gets a live display"
    assert "━" in text  # rich's bar
    plain = ANSI.sub("", text)
    for table in ("contact", "lead"):
        assert re.search(rf"{table}\s.*Successful", plain), plain[-2000:]
    assert "rows/s" in plain
    assert "members: skipped" in plain  # said once when the run started, not as a bar
    assert re.search(r"^run \S+  Successful", plain, flags=re.MULTILINE)  # the summary after the bars


def test_plan_in_a_pipe_prints_plain_lines_with_pace(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    svc = one_page_steps(app_env)
    out = io.StringIO()  # not a terminal
    code = start_and_drain(svc, RunRequest(trigger="cli", plan=True), out)
    assert code == 0
    text = out.getvalue()
    assert not ANSI.search(text)
    lines = [line for line in text.splitlines() if line.startswith("  contact: running, ")]
    lines = [line for line in lines if not line.startswith("  contact: running, 0 pages")]
    assert len(lines) >= 2, text  # a line per step that moved the table
    assert all("rows/s" in line for line in lines)
    assert any("ETA" in line for line in lines), lines
    assert "  contact: successful" in text
    assert "to write" in text
    assert emulator.stats()["rows_written"] == {}


def test_progress_picks_bars_only_for_a_terminal() -> None:
    assert isinstance(progress_for(io.StringIO()), PlainProgress)
    assert isinstance(progress_for(io.StringIO(), tty=True), BarProgress)


def test_a_bar_shows_a_table_name_as_text_not_markup() -> None:
    out = io.StringIO()
    bars = progress_for(out, tty=True)
    name = "[bold red]x[/bold red]"
    counts = {"pages": 1, "rows_read": 5, "written": 2, "already_correct": 3, "cleared": 0}
    progress = {"rowsPerSecond": 2.5, "mappingRowsLeft": 10, "atLeast": False, "etaSeconds": 4}
    bars.update(
        {
            "tables": [
                {"table": name, "status": "Held", "kind": "hydrate", "counts": counts, "progress": progress}
            ]
        }
    )
    bars.close()
    plain = ANSI.sub("", out.getvalue())
    assert name in plain
    assert "Held" in plain  # a status this version does not know, as it is


# -- status --watch ---------------------------------------------------------------------------------


def test_status_watch_in_a_pipe_repeats_until_the_run_is_done(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    worker = one_page_steps(app_env)
    started = worker.planner().start(RunRequest(trigger="cli"))
    svc, clock = watcher(app_env, worker)
    out = io.StringIO()
    assert watch(svc, out, interval=2, limit=5, run_id=None) == 0
    rounds = [r for r in out.getvalue().split("-- ") if r]
    assert len(rounds) == clock.waits + 1 >= 3
    assert all(f"run {started.run_id}  Running" in r for r in rounds[:-1])
    assert "(no run is running)" in rounds[-1]
    assert f"run {started.run_id}  Successful" in rounds[-1]
    assert_all_correct(emulator)


def test_status_watch_on_a_terminal_redraws_in_place(app_env: dict[str, str]) -> None:
    worker = one_page_steps(app_env)
    started = worker.planner().start(RunRequest(trigger="cli", tables=("lead",)))
    svc, clock = watcher(app_env, worker)
    out = io.StringIO()
    assert watch(svc, out, interval=2, limit=5, run_id=started.run_id, tty=True) == 0
    assert clock.waits >= 2
    text = out.getvalue()
    assert "\x1b[" in text  # cursor movement: the same lines redrawn
    assert "no run is running" in ANSI.sub("", text)


def test_status_watch_returns_at_once_when_no_run_is_running(app_env: dict[str, str]) -> None:
    code, out = cli(app_env, "status", "--watch", "--interval", "0.1")
    assert code == 0
    assert out.startswith("-- ")
    assert "(no run is running)" in out
    assert "no runs yet" in out


# -- history ----------------------------------------------------------------------------------------


def test_history_lists_runs_newest_first_with_each_tables_outcome(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    assert cli(app_env, "plan", "--tables", "lead")[0] == 0
    assert cli(app_env, "run")[0] == 0
    code, out = cli(app_env, "history", "--limit", "5")
    assert code == 0
    head, newest, oldest = out.splitlines()
    assert head.split() == ["run", "status", "trigger", "kind", "written", "contact", "lead", "members"]
    assert newest.split()[1:4] == ["Successful", "cli", "run"]
    assert "Skipped" in newest  # members, CSV
    assert oldest.split()[3] == "plan"
    assert "contact" not in oldest  # the plan covered lead only: blank under contact
    assert datetime.strptime(newest.split()[0][:16], "%Y%m%dT%H%M%SZ") >= datetime.strptime(
        oldest.split()[0][:16], "%Y%m%dT%H%M%SZ"
    )
    code, out = cli(app_env, "history", "--json")
    assert '"runs"' in out


# -- retry-failed -----------------------------------------------------------------------------------


def test_retry_failed_runs_only_the_failed_tables_once_fixed(
    app_env: dict[str, str], emulator: EmulatorClient
) -> None:
    code, out = cli(app_env, "retry-failed")
    assert (code, out) == (0, "nothing to retry: no configured table's latest task Failed (last 50 runs)\n")

    env = {**app_env, "HYDRATION_ALLOW_CREATE_LOOKUP": "false"}
    assert cli(env, "run")[0] == 1  # neither table has the lookup: both fail
    assert cli(env, "provision", "--tables", "lead")[0] == 0
    code, out = cli(env, "retry-failed")
    assert "retrying the tables whose latest task Failed: contact, lead" in out
    assert code == 1  # contact still has no lookup
    code, out = cli(env, "history", "--limit", "1")
    assert re.search(r"Failed\s+Successful", out.splitlines()[1]), out  # contact failed, lead linked

    assert cli(env, "provision", "--tables", "contact")[0] == 0
    code, out = cli(env, "retry-failed")
    assert "retrying the tables whose latest task Failed: contact\n" in out
    assert code == 0
    assert_all_correct(emulator)
    assert cli(env, "retry-failed")[1].startswith("nothing to retry")
