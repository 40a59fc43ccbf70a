"""Injected faults over real HTTP: 500, 503, 429 bursts, slow answers, dropped connections, the Nth match.

Each kind is checked for the exact answer the client sees (status, error body, ``Retry-After``, or a
``requests.ConnectionError``), for whether the request ran, and for the counters; rates are checked for
determinism under a seed; the control API for refusing bad rules without changing anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dataverse_emulator.client import ControlCallError, EmulatorClient, WebApi
from dataverse_emulator.limits import LimitsConfig
from tests.emulator.test_batch_api import part, post_batch

UPDATE_MULTIPLE = "contacts/Microsoft.Dynamics.CRM.UpdateMultiple"


@pytest.fixture(autouse=True)
def no_faults(emulator: EmulatorClient) -> Iterator[None]:
    """Every test starts from a reset emulator and leaves no rules and default limits behind."""
    yield
    emulator.clear_faults()
    emulator.limits(**LimitsConfig().to_json())


@pytest.fixture
def contact(api: WebApi) -> str:
    """A contact to write."""
    return str(api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"])


def body(response: requests.Response) -> dict[str, Any]:
    return dict(response.json()["error"])


def firstname(api: WebApi, contact: str) -> str | None:
    value = api.get(f"contacts({contact})?$select=firstname").json()["firstname"]
    return None if value is None else str(value)


def rename(api: WebApi, contact: str, name: str) -> requests.Response:
    return api.patch(f"contacts({contact})", json={"firstname": name}, headers={"If-Match": "*"})


def test_no_faults_by_default(emulator: EmulatorClient, api: WebApi) -> None:
    assert emulator.faults() == {"seed": 0, "rules": [], "matched": [], "fired": []}
    assert all(api.get("WhoAmI").status_code == 200 for _ in range(10))
    assert "faults" not in emulator.stats()


def test_the_nth_matching_request_answers_500(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "error", "status": 500, "nth": 2}])
    statuses = [api.get("WhoAmI").status_code for _ in range(3)]
    assert statuses == [200, 500, 200]
    emulator.faults([{"kind": "error", "status": 500, "nth": 1}])
    failed = api.get("WhoAmI")
    assert body(failed) == {"code": "0x80040216", "message": "An unexpected error occurred."}
    assert failed.headers["OData-Version"] == "4.0"
    stats = emulator.stats()
    assert stats["faults"] == {"500": 2}
    assert stats["requests"]["fault"] == 2
    assert stats["statuses"]["500"] == 2
    assert stats["per_user"]["hydration-app"]["faults"] == 2


def test_the_third_update_multiple_answers_503_and_is_not_run(
    emulator: EmulatorClient, api: WebApi, contact: str
) -> None:
    emulator.faults(
        [{"kind": "error", "status": 503, "method": "POST", "path": ".*UpdateMultiple", "nth": 3}]
    )
    target = {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": contact}
    answers = []
    for index in range(4):
        assert api.get("WhoAmI").status_code == 200, "other requests do not match"
        written = api.post(UPDATE_MULTIPLE, json={"Targets": [{**target, "firstname": f"Try{index}"}]})
        answers.append(written.status_code)
        if written.status_code == 503:
            assert (
                body(written)["message"] == "The service is temporarily unavailable. Please try again later."
            )
            assert firstname(api, contact) == "Try1", "the failed request was not run"
    assert answers == [204, 204, 503, 204]
    assert firstname(api, contact) == "Try3"
    state = emulator.faults()
    assert (state["matched"], state["fired"]) == ([4], [1])
    assert state["rules"] == [
        {
            "kind": "error",
            "method": "POST",
            "path": ".*UpdateMultiple",
            "nth": 3,
            "status": 503,
            "after": False,
        }
    ]


def test_an_error_after_the_request_ran_hides_a_write_that_happened(
    emulator: EmulatorClient, api: WebApi, contact: str
) -> None:
    emulator.faults([{"kind": "error", "status": 500, "method": "PATCH", "count": 1, "after": True}])
    failed = rename(api, contact, "Written")
    assert failed.status_code == 500
    assert firstname(api, contact) == "Written"
    stats = emulator.stats()
    assert stats["faults"] == {"500": 1}
    assert stats["requests"]["update"] == 1, "counted as the update it was"


def test_a_rate_of_one_fails_every_matching_request_and_only_those(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.faults([{"kind": "error", "status": 503, "rate": 1, "method": "GET", "path": "^contacts"}])
    assert api.get("contacts?$top=1").status_code == 503
    assert api.get("leads?$top=1").status_code == 200
    assert api.get("WhoAmI").status_code == 200
    assert emulator.web_api("someone-else").get("contacts?$top=1").status_code == 503


def test_a_429_burst_for_one_user(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "throttle", "retry_after": 7, "count": 3, "user": "hydration-app"}])
    other = emulator.web_api("other-user")
    answers = []
    for _ in range(4):
        answers.append(api.get("WhoAmI"))
        assert other.get("WhoAmI").status_code == 200
    assert [a.status_code for a in answers] == [429, 429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert body(answers[0]) == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    }
    stats = emulator.stats()
    assert stats["faults"] == {"429": 3}
    assert "throttled" not in stats, "an injected 429 is a fault, not a limit"


def test_a_429_burst_can_word_another_limit(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "throttle", "retry_after": 0, "limit": "concurrency", "count": 1}])
    refused = api.get("WhoAmI")
    assert refused.headers["Retry-After"] == "0"
    assert body(refused)["code"] == "0x80072326"


def test_a_slow_answer_is_delayed_by_its_seconds_times_the_time_factor(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.limits(time_factor=0.1)  # limits stay off; the factor still scales injected delays
    emulator.faults([{"kind": "slow", "delay_seconds": 4, "nth": 1}])
    start = time.monotonic()
    assert api.get("WhoAmI").status_code == 200
    slow = time.monotonic() - start
    start = time.monotonic()
    assert api.get("WhoAmI").status_code == 200
    fast = time.monotonic() - start
    assert slow >= 0.4
    assert fast < slow / 2
    stats = emulator.stats()
    assert stats["faults"] == {"slow": 1}
    assert stats["requests"] == {"whoami": 2}


def test_a_dropped_connection_is_a_connection_error(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "drop", "nth": 1}])
    with pytest.raises(requests.ConnectionError):
        api.get("WhoAmI")
    assert api.get("WhoAmI").status_code == 200, "the next connection is served"
    stats = emulator.stats()
    assert stats["faults"] == {"drop": 1}
    assert stats["requests"] == {"fault": 1, "whoami": 1}
    assert stats["statuses"] == {"200": 1}, "no status was sent"


def test_a_connection_dropped_after_a_write_still_wrote(
    emulator: EmulatorClient, api: WebApi, contact: str
) -> None:
    emulator.faults([{"kind": "drop", "method": "PATCH", "nth": 1, "after": True}])
    with pytest.raises(requests.ConnectionError):
        rename(api, contact, "Dropped")
    assert firstname(api, contact) == "Dropped"


def test_a_hostile_answer_is_served_in_place_of_the_request(
    emulator: EmulatorClient, api: WebApi, contact: str
) -> None:
    hostile = {"value": [], "@odata.nextLink": "http://127.0.0.1:1\\@127.0.0.1:2/api/data/v9.2/contacts"}
    emulator.faults([{"kind": "answer", "body": hostile, "method": "GET", "path": "^contacts$", "count": 1}])
    response = api.get("contacts?$select=contactid")
    assert response.status_code == 200
    assert response.json() == hostile
    assert len(api.get("contacts?$select=contactid").json()["value"]) > 0  # only the first
    assert rename(api, contact, "Ada").status_code == 204  # other requests run as usual
    stats = emulator.stats()
    assert stats["faults"] == {"answer": 1}
    assert emulator.faults()["fired"] == [1]


def test_the_same_seed_gives_the_same_faults(emulator: EmulatorClient, api: WebApi) -> None:
    rules = [{"kind": "error", "status": 503, "rate": 0.3}]

    def run(seed: int) -> list[int]:
        emulator.faults(rules, seed=seed)
        return [api.get("WhoAmI").status_code for _ in range(40)]

    first = run(5)
    assert first == run(5)
    assert 0 < first.count(503) < 40
    assert emulator.faults()["fired"] == [first.count(503)]
    assert run(6) != first


def test_the_first_rule_that_fires_applies_and_every_match_is_counted(
    emulator: EmulatorClient, api: WebApi
) -> None:
    emulator.faults(
        [{"kind": "error", "status": 500, "nth": 1}, {"kind": "error", "status": 503, "count": 2}]
    )
    assert [api.get("WhoAmI").status_code for _ in range(3)] == [500, 503, 200]
    state = emulator.faults()
    assert (state["matched"], state["fired"]) == ([3, 3], [1, 1])


def test_faults_never_touch_the_control_api_or_batch_parts(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "error", "status": 500, "rate": 1, "path": "WhoAmI|stats|health"}])
    assert emulator.stats()["requests"] == {}
    assert requests.get(f"{emulator.base_url}/_emulator/health", timeout=10).status_code == 200
    answer = post_batch(api, [part("GET", "/api/data/v9.2/WhoAmI")])
    assert answer.status_code == 200
    assert "HTTP/1.1 200" in answer.text
    assert api.get("WhoAmI").status_code == 500


def test_faults_and_limits_work_together(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.limits(enabled=True, time_factor=0.01, window_seconds=1000, max_requests=2)
    emulator.faults([{"kind": "error", "status": 503, "nth": 1}])
    statuses = [api.get("WhoAmI").status_code for _ in range(4)]
    assert statuses == [503, 200, 200, 429], "a request the fault answered never reached the limits"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"rules": [{"kind": "explode", "rate": 1}]}, "'kind' must be one of"),
        ({"rules": [{"kind": "error"}]}, "needs 'rate'"),
        ({"rules": [{"kind": "error", "rate": 0.5, "nth": 2}]}, "cannot be combined"),
        ({"rules": [{"kind": "error", "rate": 1.5}]}, "'rate' must be"),
        ({"rules": [{"kind": "error", "nth": 0}]}, "'nth' must be"),
        ({"rules": [{"kind": "error", "count": True}]}, "'count' must be"),
        ({"rules": [{"kind": "error", "status": 404, "nth": 1}]}, "'status' must be"),
        ({"rules": [{"kind": "drop", "status": 500, "nth": 1}]}, "does not apply to a drop rule"),
        ({"rules": [{"kind": "error", "path": "(", "nth": 1}]}, "not a valid regular expression"),
        ({"rules": [{"kind": "error", "method": "get", "nth": 1}]}, "'method' must be"),
        ({"rules": [{"kind": "slow", "nth": 1}]}, "'delay_seconds' must be"),
        ({"rules": [{"kind": "slow", "delay_seconds": 0, "nth": 1}]}, "'delay_seconds' must be"),
        ({"rules": [{"kind": "throttle", "retry_after": -1, "nth": 1}]}, "'retry_after' must be"),
        ({"rules": [{"kind": "throttle", "limit": "memory", "nth": 1}]}, "'limit' must be"),
        ({"rules": [{"kind": "drop", "after": "yes", "nth": 1}]}, "'after' must be"),
        ({"rules": [{"kind": "drop", "nth": 1}], "seed": "x"}, "'seed' must be"),
        ({"rules": [{"kind": "answer", "nth": 1}]}, "'body' must be"),
        ({"rules": [{"kind": "answer", "body": [], "nth": 1}]}, "'body' must be"),
        ({"rules": [{"kind": "error", "body": {}, "nth": 1}]}, "does not apply to a error rule"),
        ({"rules": {"kind": "drop"}}, "'rules' must be a list"),
        ({"rules": ["drop"]}, "each rule must be a JSON object"),
        ({"rules": [], "extra": 1}, "unknown field 'extra'"),
        ({"rules": [{"kind": "drop", "nth": 1}, {"kind": "drop"}]}, "rules[1]"),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(
    emulator: EmulatorClient, payload: dict[str, Any], message: str
) -> None:
    emulator.faults([{"kind": "slow", "delay_seconds": 1, "rate": 0.5}], seed=9)
    before = emulator.faults()
    response = requests.put(f"{emulator.base_url}/_emulator/faults", json=payload, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert emulator.faults() == before


def test_a_body_that_is_not_an_object_is_refused(emulator: EmulatorClient) -> None:
    response = requests.put(f"{emulator.base_url}/_emulator/faults", json=[], timeout=10)
    assert response.status_code == 400
    with pytest.raises(ControlCallError):
        emulator.faults([{"kind": "nope", "rate": 1}])


def test_clear_and_reset_remove_the_rules(emulator: EmulatorClient, api: WebApi) -> None:
    emulator.faults([{"kind": "error", "rate": 1}])
    emulator.clear_faults()
    assert api.get("WhoAmI").status_code == 200
    emulator.faults([{"kind": "error", "rate": 1}])
    emulator.reset(contacts=10, leads=5)
    assert emulator.faults()["rules"] == []
    assert api.get("WhoAmI").status_code == 200
