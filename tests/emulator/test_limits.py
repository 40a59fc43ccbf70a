"""Service protection limits and the cost model: 429s at each threshold, recovery, growth, per user.

Over real HTTP with a small time factor and short windows, so a 300-second window passes in a fraction
of a second; the penalty's decay, which needs long waits, is checked on the ``Limiter`` with a fake
clock. Timing assertions are loose (slower than, at least): exact values are asserted on statuses,
codes, messages, ``Retry-After`` and counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi
from dataverse_emulator.limits import (
    CONCURRENCY,
    EXECUTION_TIME,
    REQUESTS,
    Limiter,
    LimitsConfig,
    Throttle,
    Ticket,
    throttle_error,
)
from dataverse_emulator.request_tally import RequestTally
from tests.emulator.test_batch_api import change_set, part, post_batch

DEFAULTS = LimitsConfig().to_json()
REQUESTS_MESSAGE = "Number of requests exceeded the limit of {n} over time window of {w} seconds."
EXECUTION_MESSAGE = (
    "Combined execution time of incoming requests exceeded limit of {ms}  milliseconds over time window "
    "of {w} seconds. Decrease number of concurrent requests or reduce the duration of requests and try "
    "again later."
)


@pytest.fixture(autouse=True)
def limits_off(emulator: EmulatorClient) -> Iterator[None]:
    """Every test starts from a reset emulator and leaves the limits as it found them (off)."""
    yield
    emulator.limits(**DEFAULTS)


def error(response: requests.Response) -> tuple[int, str, str, str | None]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"], response.headers.get("Retry-After")


def whoami(api: WebApi) -> requests.Response:
    return api.get("WhoAmI")


# -- defaults and the control API ------------------------------------------------------------------


def test_limits_are_off_by_default_and_change_nothing(emulator: EmulatorClient, api: WebApi) -> None:
    settings = emulator.limits()
    assert settings == {**DEFAULTS, "usage": {}}
    assert settings["enabled"] is False
    assert (settings["max_requests"], settings["max_execution_seconds"], settings["max_concurrent"]) == (
        6000,
        1200.0,
        52,
    )
    start = time.monotonic()
    for _ in range(30):
        assert whoami(api).status_code == 200
    assert time.monotonic() - start < 3, "no cost delay while limits are off"
    stats = emulator.stats()
    assert "throttled" not in stats
    assert "execution_seconds" not in stats
    assert emulator.limits()["usage"] == {}


@pytest.mark.parametrize(
    "change",
    [
        {"enabled": "yes"},
        {"time_factor": 0},
        {"time_factor": -1},
        {"time_factor": "fast"},
        {"window_seconds": 0},
        {"max_requests": 0},
        {"max_requests": 1.5},
        {"max_requests": True},
        {"max_concurrent": 0},
        {"max_execution_seconds": 0},
        {"cost_row_read_ms": -0.1},
        {"cost_base_ms": None},
        {"max_retry_after_seconds": 0},
        {"unknown": 1},
        {"usage": {}},
        {"enabled": True, "max_requests": 0},
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    emulator: EmulatorClient, change: dict[str, Any]
) -> None:
    before = emulator.limits()
    with pytest.raises(ControlCallError) as caught:
        emulator.limits(**change)
    assert caught.value.status == 400
    assert emulator.limits() == before


def test_a_body_that_is_not_a_json_object_is_refused(emulator: EmulatorClient) -> None:
    for body in (b"not json", b"[1, 2]"):
        response = requests.patch(f"{emulator.base_url}/_emulator/limits", data=body, timeout=10)
        assert response.status_code == 400
        assert "error" in response.json()
    assert emulator.limits()["enabled"] is False


def test_a_reset_turns_limits_off(emulator: EmulatorClient) -> None:
    emulator.limits(enabled=True, max_requests=2)
    emulator.reset(contacts=10, leads=5)
    assert emulator.limits() == {**DEFAULTS, "usage": {}}


# -- the request limit -----------------------------------------------------------------------------


def test_request_limit_trips_at_its_threshold_and_recovers_after_the_window(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=50, max_requests=5)  # 0.5 s window
    for _ in range(5):
        assert whoami(api).status_code == 200
    refused = whoami(api)
    assert error(refused) == (429, "0x80072322", REQUESTS_MESSAGE.format(n=5, w=50), "1")
    assert refused.headers["x-ms-dop-hint"] == "4"
    stats = emulator.stats()
    assert stats["throttled"] == {REQUESTS: 1, EXECUTION_TIME: 0, CONCURRENCY: 0}
    assert stats["statuses"]["429"] == 1
    assert stats["requests"]["throttled"] == 1
    assert stats["per_user"]["hydration-app"]["throttled_requests"] == 1
    assert emulator.limits()["usage"]["hydration-app"]["requests_in_window"] == 5

    time.sleep(0.6)
    assert whoami(api).status_code == 200


def test_default_messages_are_the_documented_ones() -> None:
    config = LimitsConfig()
    assert throttle_error(REQUESTS, config, 3).message == (
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
    )
    assert throttle_error(EXECUTION_TIME, config, 3).message == (
        "Combined execution time of incoming requests exceeded limit of 1,200,000  milliseconds over time "
        "window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests "
        "and try again later."
    )
    refused = throttle_error(CONCURRENCY, config, 1)
    assert (refused.status, refused.code, refused.message, refused.headers) == (
        429,
        "0x80072326",
        "Number of concurrent requests exceeded the limit of 52.",
        {"Retry-After": "1"},
    )


def test_retry_after_is_scaled_and_rounded_up_to_whole_seconds() -> None:
    assert LimitsConfig(time_factor=1).retry_after(10.0) == 10
    assert LimitsConfig(time_factor=1).retry_after(9.2) == 10
    assert LimitsConfig(time_factor=0.01).retry_after(150) == 2
    assert LimitsConfig(time_factor=0.01).retry_after(100) == 1
    assert LimitsConfig(time_factor=0.001).retry_after(300) == 1, "never below one second"


# -- the execution-time limit ----------------------------------------------------------------------


def test_execution_time_limit_trips_with_the_default_limit_and_recovers(
    emulator: EmulatorClient, api: WebApi
) -> None:
    # One stream can never fill the budget (each answer takes as long as it cost), so three requests of
    # 400 server-seconds run at once: their cost is charged when they are done, before the answer's
    # delay (0.4 s at this factor), while the 300-second window lasts 0.3 s.
    emulator.limits(enabled=True, time_factor=0.001, cost_base_ms=400_000)
    threads = [threading.Thread(target=lambda: whoami(emulator.web_api("hydration-app"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while emulator.limits()["usage"].get("hydration-app", {}).get("execution_seconds_in_window") != 1200:
        assert time.monotonic() < deadline, "the three requests were never charged"
    refused = whoami(api)
    assert error(refused) == (429, "0x80072321", EXECUTION_MESSAGE.format(ms="1,200,000", w=300), "1")
    for thread in threads:
        thread.join()
    stats = emulator.stats()
    assert stats["throttled"] == {REQUESTS: 0, EXECUTION_TIME: 1, CONCURRENCY: 0}
    assert stats["execution_seconds"]["hydration-app"] == pytest.approx(1200.001)
    assert stats["statuses"] == {"200": 3, "429": 1}

    time.sleep(0.3)
    emulator.limits(cost_base_ms=80)
    assert whoami(api).status_code == 200


def test_execution_time_limit_with_configured_numbers(emulator: EmulatorClient, api: WebApi) -> None:
    # 80 ms per WhoAmI: seven fill half a second, the eighth is refused.
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=50, max_execution_seconds=0.5)
    for _ in range(7):
        assert whoami(api).status_code == 200
    refused = whoami(api)
    assert error(refused) == (429, "0x80072321", EXECUTION_MESSAGE.format(ms="500", w=50), "1")
    assert emulator.limits()["usage"]["hydration-app"]["execution_seconds_in_window"] == pytest.approx(0.561)
    time.sleep(0.6)
    assert whoami(api).status_code == 200


# -- the concurrency limit -------------------------------------------------------------------------


def test_concurrency_limit_fails_at_once_per_user(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.limits(enabled=True, time_factor=1, max_concurrent=2, cost_base_ms=1500)
    statuses: list[int] = []

    def slow_call() -> None:
        with emulator.web_api("hydration-app") as session:
            statuses.append(whoami(session).status_code)

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while emulator.limits()["usage"].get("hydration-app", {}).get("in_flight") != 2:
        assert time.monotonic() < deadline, "the two slow requests never got in flight"
        time.sleep(0.01)
    refused = whoami(api)
    assert error(refused) == (
        429,
        "0x80072326",
        "Number of concurrent requests exceeded the limit of 2.",
        "1",
    )
    emulator.limits(cost_base_ms=0)  # the other user's answer comes at once (windows start afresh)
    assert whoami(emulator.web_api("other-user")).status_code == 200, "another user has its own slots"
    for thread in threads:
        thread.join()
    assert statuses == [200, 200]
    assert whoami(api).status_code == 200, "slots free as soon as the answers are sent"
    assert emulator.stats()["throttled"][CONCURRENCY] == 1


# -- growth, users, $batch, cost ---------------------------------------------------------------------


def test_retry_after_grows_while_a_user_keeps_sending_and_is_capped(
    emulator: EmulatorClient, api: WebApi
) -> None:
    # A 10-second window (10,000 server-seconds at 0.001): each request sent while throttled doubles the
    # wait (at most once per server-second, here 1 ms), up to the cap of 50,000 server-seconds = 50 s.
    emulator.limits(
        enabled=True, time_factor=0.001, window_seconds=10_000, max_requests=2, max_retry_after_seconds=50_000
    )
    assert whoami(api).status_code == 200
    assert whoami(api).status_code == 200
    waits = []
    for _ in range(5):
        refused = whoami(api)
        assert refused.status_code == 429
        waits.append(refused.headers["Retry-After"])
        time.sleep(0.005)
    assert waits == ["10", "20", "40", "50", "50"]
    assert emulator.stats()["throttled"][REQUESTS] == 5
    assert emulator.limits()["usage"]["hydration-app"]["strikes"] == 4


def test_limits_are_per_user(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=1000, max_requests=2)
    other = emulator.web_api("second-app-user")
    assert [whoami(api).status_code for _ in range(3)] == [200, 200, 429]
    assert [whoami(other).status_code for _ in range(3)] == [200, 200, 429], "its own budget"
    assert whoami(api).status_code == 429, "the first user is still throttled"
    per_user = emulator.stats()["per_user"]
    assert per_user["hydration-app"]["throttled_requests"] == 2
    assert per_user["second-app-user"]["throttled_requests"] == 1
    assert set(emulator.stats()["execution_seconds"]) == {"hydration-app", "second-app-user"}


def test_a_batch_counts_once_for_requests_and_its_rows_for_execution_time(
    emulator: EmulatorClient, api: WebApi
) -> None:
    contacts = [c["contactid"] for c in api.get("contacts?$select=contactid&$top=3").json()["value"]]
    emulator.reset_stats()
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=1000, max_requests=2)
    parts = [part("PATCH", f"/api/data/v9.2/contacts({c})", {"firstname": "Batch"}) for c in contacts]
    reads = part("GET", "/api/data/v9.2/contacts?$select=contactid&$top=10")
    answer = post_batch(api, [change_set(parts), reads])
    assert answer.status_code == 200, answer.text
    usage = emulator.limits()["usage"]["hydration-app"]
    assert usage["requests_in_window"] == 1, "a $batch is one request"
    # 80 ms envelope + 4 parts × 1 ms + 3 records × 9 ms + 10 rows read × 0.05 ms
    assert usage["execution_seconds_in_window"] == pytest.approx(0.1115)
    assert emulator.stats()["execution_seconds"] == {"hydration-app": pytest.approx(0.1115)}
    assert whoami(api).status_code == 200
    assert whoami(api).status_code == 429


def test_the_answer_is_delayed_by_its_cost_times_the_time_factor(emulator: EmulatorClient) -> None:
    emulator.reset(contacts=500, leads=10, seed=3)
    api = emulator.web_api("hydration-app")
    contacts = api.get("contacts?$select=contactid", headers={"Prefer": "odata.maxpagesize=500"})
    ids = [c["contactid"] for c in contacts.json()["value"]]
    assert len(ids) == 500
    emulator.limits(enabled=True, time_factor=0.1)
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": i, "lastname": "Slow"} for i in ids
    ]

    start = time.monotonic()
    assert api.get("WhoAmI").status_code == 200
    get_seconds = time.monotonic() - start
    start = time.monotonic()
    written = api.post("contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets})
    bulk_seconds = time.monotonic() - start

    assert written.status_code == 204
    # 80 ms + 500 × 9 ms = 4.58 server-seconds, answered after 0.458 s at this factor; WhoAmI after 8 ms.
    assert bulk_seconds >= 0.45
    assert bulk_seconds > 3 * get_seconds
    assert emulator.stats()["execution_seconds"]["hydration-app"] == pytest.approx(0.08 + 4.58)


def test_stats_reset_zeroes_the_limit_counters(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=1000, max_requests=1)
    assert [whoami(api).status_code for _ in range(2)] == [200, 429]
    emulator.reset_stats()
    stats = emulator.stats()
    assert "throttled" not in stats
    assert "execution_seconds" not in stats


# -- the limiter on a fake clock -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refuse(limiter: Limiter, user: str = "u") -> Throttle:
    answer = limiter.admit(user)
    assert isinstance(answer, Throttle)
    return answer


def admit(limiter: Limiter, user: str = "u") -> Ticket:
    answer = limiter.admit(user)
    assert isinstance(answer, Ticket)
    limiter.charge(answer, RequestTally())
    limiter.release(answer)
    return answer


def test_the_penalty_decays_when_the_user_stops() -> None:
    clock = FakeClock()
    config = LimitsConfig(enabled=True, window_seconds=100, max_requests=1, max_retry_after_seconds=10_000)
    limiter = Limiter(config, clock=clock)
    admit(limiter)
    assert refuse(limiter).retry_after == 100
    clock.now += 1
    assert refuse(limiter).retry_after == 198, "sent while throttled: the 99 s left, doubled"
    clock.now += 1
    assert refuse(limiter).retry_after == 392, "again: 98 s, doubled twice"
    clock.now += 392  # honours the last Retry-After: one doubling forgiven, and the window is empty
    admit(limiter)
    assert refuse(limiter).retry_after == 200, "one strike left: the window's 100 s doubled once"
    clock.now += 200
    admit(limiter)
    assert refuse(limiter).retry_after == 100, "no strikes left"


def test_a_quiet_window_after_the_block_forgives_a_strike() -> None:
    clock = FakeClock()
    config = LimitsConfig(enabled=True, window_seconds=10, max_requests=1, max_retry_after_seconds=1000)
    limiter = Limiter(config, clock=clock)
    admit(limiter)
    refuse(limiter)
    for _ in range(3):
        clock.now += 1
        refuse(limiter)
    assert limiter.usage()["u"]["strikes"] == 3
    clock.now += limiter.usage()["u"]["blocked_for_seconds"] + 20  # the block, then two quiet windows
    admit(limiter)
    assert limiter.usage()["u"]["strikes"] == 0, "one for honouring the block, two for the quiet windows"


def test_requests_in_flight_when_the_first_429_comes_back_are_not_punished() -> None:
    clock = FakeClock()
    limiter = Limiter(LimitsConfig(enabled=True, window_seconds=10, max_requests=1), clock=clock)
    admit(limiter)
    assert [refuse(limiter).retry_after for _ in range(5)] == [10] * 5
    clock.now += 0.5
    assert refuse(limiter).retry_after == 10, "within one server-second of the first refusal"
    clock.now += 0.5
    assert refuse(limiter).retry_after == 18, "a second later: the remaining 9 s doubled"


def test_refused_requests_cost_a_little_and_are_not_counted_as_requests() -> None:
    clock = FakeClock()
    limiter = Limiter(LimitsConfig(enabled=True, window_seconds=10, max_requests=1), clock=clock)
    admit(limiter)
    refuse(limiter)
    usage = limiter.usage()["u"]
    assert usage["requests_in_window"] == 1
    assert usage["execution_seconds_in_window"] == pytest.approx(0.081)
