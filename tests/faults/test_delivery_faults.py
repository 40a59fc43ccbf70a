"""The fault matrix, part two: hostile answers, stray and repeated messages, competing runs and hosts.

Each case goes through the app's planner and queue handlers against the emulator and Azurite, checks
what the run recorded, and ends with every row checked against the emulator's truth.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from hydration import handlers
from hydration.checkpoints import Phase
from hydration.messages import TaskMessage
from hydration.worker import Outcome
from tests.engine.harness import CrashingQueue

from .scene import Scene

pytestmark = pytest.mark.integration


@pytest.fixture
def other_host() -> Iterator[list[str]]:
    """A loopback server that records the Authorization header of every request it gets."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            body = json.dumps({"value": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    seen.append(str(httpd.server_address[1]))  # the port first
    yield seen
    httpd.shutdown()
    httpd.server_close()


def test_a_next_link_to_another_host_fails_the_task_and_sends_it_nothing(
    scene: Callable[..., Scene], other_host: list[str]
) -> None:
    s = scene()
    organization = urlsplit(s.emulator.base_url).netloc
    link = f"http://127.0.0.1:{other_host[0]}\\@{organization}/api/data/v9.2/msdynci_alternatekeys?x=1"
    run_id = s.start(tables=("contact",))
    s.inject(
        [
            {
                "kind": "answer",
                "body": {"value": [], "@odata.nextLink": link},
                "method": "GET",
                "path": "^msdynci_alternatekeys$",
                "count": 1,
            }
        ]
    )
    view = s.drain(run_id)
    assert s.clear_faults() == 1
    assert other_host[1:] == []  # not a request, let alone the token
    task = s.tables(view)["contact"]
    assert task["status"] == "Failed"
    assert "outside the organization" in task["details"]
    s.untouched()
    assert s.run()["status"] == "Successful"
    s.verify()


@pytest.mark.parametrize("full", [False, True])
def test_braced_alternate_values_are_invalid_keys_and_their_links_stay(
    scene: Callable[..., Scene], full: bool
) -> None:
    s = scene()
    assert s.run()["status"] == "Successful"
    with s.emulator.web_api("cid-user") as api:  # a source writes a dozen keys as {GUID}
        rows = api.get(
            "msdynci_alternatekeys?$select=msdynci_alternatekeyid,msdynci_alternatevalue"
            "&$filter=msdynci_entityname eq 'contact' and msdynci_datasourcename eq 'DataverseSales'"
            "&$top=12"
        ).json()["value"]
        for row in rows:
            braced = "{" + row["msdynci_alternatevalue"].upper() + "}"
            answer = api.patch(
                f"msdynci_alternatekeys({row['msdynci_alternatekeyid']})",
                json={"msdynci_alternatevalue": braced},
                headers={"If-Match": "*"},
            )
            assert answer.status_code == 204, answer.text
    s.count(len(rows))
    s.emulator.advance_clock(16 * 60)
    view = s.run(full=full)  # neither the incremental pass nor the reconcile may touch their links
    assert view["status"] == "Successful"
    s.verify()  # the truth reads {GUID} as the GUID: the links kept are the right ones
    contact = s.tables(view)["contact"]["counts"]
    assert contact["invalid_keys"] >= len(rows)
    assert (contact["written"], contact["cleared"]) == (0, 0)


def test_every_message_delivered_twice(scene: Callable[..., Scene]) -> None:
    s = scene()
    twice = CrashingQueue(s.queue, duplicate=True)
    svc = s.host(queue=twice)
    expected = sum(s.emulator.links(t, rows="none")["summary"]["expected_links"] for t in ("contact", "lead"))
    view = s.run(svc)
    s.count(len(twice.sent))
    assert view["status"] == "Successful"
    assert view["countsExact"] is True  # a copy that found its step taken ran nothing
    assert sum(s.emulator.stats()["rows_written"].values()) == expected  # each row once
    left = s.driver(svc).drain(idle_timeout=1)  # the copies of the last steps, after the run ended
    assert left.failed == left.poisoned == 0
    assert sum(s.emulator.stats()["rows_written"].values()) == expected
    assert s.view(view["runId"])["counts"] == view["counts"]
    s.verify()


def test_two_runs_at_once_on_two_hosts(scene: Callable[..., Scene]) -> None:
    s = scene()
    hosts = [s.svc, s.host()]
    first, second = s.start(hosts[0]), s.start(hosts[1])
    drivers = [s.driver(h) for h in hosts]
    for turn in range(400):  # the two hosts take turns at the one queue
        if drivers[turn % 2].step() is None and s.queue.approximate_count() == 0:
            break
    s.count(1)
    views = {run: s.tables(s.view(run)) for run in (first, second)}
    for table in ("contact", "lead"):  # per table, one run hydrates and the other asks for a rerun
        tasks = {views[run][table]["status"]: (run, views[run][table]) for run in (first, second)}
        assert sorted(tasks) == ["Skipped", "Successful"], views
        winner, _ = tasks["Successful"]
        assert f"being hydrated by run {winner}; a rerun was requested" in tasks["Skipped"][1]["details"]
    s.verify()


def test_a_second_run_in_mid_step_is_merged_and_the_pass_carries_on(scene: Callable[..., Scene]) -> None:
    s = scene(step_pages=3)
    other = s.host()
    second: list[str] = []

    def another_trigger() -> None:  # POST /api/runs while contact's step is between two pages
        second.append(s.start(other, tables=("contact",)))
        outcome = handlers.on_message(TaskMessage(second[0], "contact", 0).encode(), 1, other)
        assert outcome is Outcome.SKIPPED

    s.svc = s.host(
        state=s.hooked(
            lambda cp: cp.table == "contact" and cp.seq == 0 and cp.counters.pages == 1 and cp.active,
            another_trigger,
        )
    )
    first = s.start(tables=("contact",))
    view = s.drain(first)
    s.count(1)
    assert view["status"] == "Successful", view
    assert s.view(second[0])["status"] == "Skipped"
    assert s.svc.state.checkpoint("contact").value.phase is Phase.DONE  # the rerun ran, no stall
    s.verify("contact")


def test_a_superseded_run_is_closed(scene: Callable[..., Scene]) -> None:
    s = scene()
    first = s.start(tables=("contact",))
    assert s.driver().step() is not None  # step 0 ran
    s.queue.clear()  # the chain is lost
    s.count(1)
    s.pass_lease()
    second = s.start(tables=("contact",))
    assert s.drain(second)["status"] == "Successful"
    old = s.tables(s.view(first))["contact"]
    assert old["status"] == "Failed"
    assert f"superseded by run {second}" in old["details"]
    s.verify("contact")


def test_a_late_poison_message_leaves_a_finished_task_alone(scene: Callable[..., Scene]) -> None:
    s = scene()
    run_id = s.start()
    assert s.drain(run_id)["status"] == "Successful"
    for table in ("contact", "lead"):
        handlers.on_poison(TaskMessage(run_id, table, 0).encode(), 5, s.svc)
    s.count(2)
    view = s.view(run_id)
    assert view["status"] == "Successful"
    assert all(not s.svc.state.checkpoint(t).value.active for t in ("contact", "lead"))
    s.verify()


def test_a_message_whose_kind_differs_from_its_task_is_rejected(scene: Callable[..., Scene]) -> None:
    s = scene()
    plan = s.start(plan=True)
    for table in ("contact", "lead"):
        stray = TaskMessage(plan, table, 0, kind="hydrate").encode()
        assert handlers.on_message(stray, 1, s.svc) is Outcome.REJECTED
    s.count(2)
    view = s.drain(plan)
    assert view["status"] == "Successful"
    assert s.emulator.stats()["rows_written"] == {}  # a dry run, whatever the messages said
    would = view["counts"]["written"]
    live = s.run()
    assert live["counts"]["written"] == would == sum(s.emulator.stats()["rows_written"].values())
    s.verify()


def test_the_losing_copy_of_step_0_is_dropped_quietly(scene: Callable[..., Scene]) -> None:
    s = scene()
    run_id = s.start(tables=("contact",))
    step0 = TaskMessage(run_id, "contact", 0).encode()
    other = s.host()
    won: list[Outcome] = []

    def the_other_copy_first() -> None:  # both copies read the checkpoint; the other saves first
        won.append(handlers.on_message(step0, 1, other))

    loser = s.host(
        state=s.hooked(
            lambda cp: cp.run_id == run_id and cp.seq == 0 and cp.phase is Phase.RETRY, the_other_copy_first
        )
    )
    assert handlers.on_message(step0, 1, loser) is Outcome.DUPLICATE  # no ConflictError
    assert won == [Outcome.DONE]
    s.count(1)
    view = s.drain(run_id)
    assert view["status"] == "Successful"
    s.verify("contact")
