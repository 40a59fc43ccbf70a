"""``POST $batch`` over HTTP: dispatch of parts and change sets, rollback, errors, Content-ID, counters."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi

from .test_writes import (
    CONTACTS,
    LEADS,
    NAV,
    PID,
    PROFILES,
    SEED,
    VALUE,
    bind,
    contact_ids,
    create_lookup,
    profiles,
    read,
)

CRLF = "\r\n"
BATCH = "batch_AAA123"
CHANGESET = "changeset_BBB456"
API_PATH = "/api/data/v9.2/"


# -- building requests as the Microsoft documentation shows them ------------------------------------


def part(
    method: str,
    url: str,
    body: Any = None,
    *,
    content_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """One ``application/http`` part: MIME headers, blank line, request line, headers, blank line, body."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    lines.append(
        "Content-Type: application/json; type=entry" if body is not None else "Accept: application/json"
    )
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += ["", "" if body is None else json.dumps(body)]
    return CRLF.join(lines)


def change_set(parts: list[str], boundary: str = CHANGESET) -> str:
    inner = "".join(f"--{boundary}{CRLF}{p}{CRLF}" for p in parts) + f"--{boundary}--{CRLF}"
    return f"Content-Type: multipart/mixed; boundary={boundary}{CRLF}{CRLF}{inner}"


def batch_body(items: list[str], boundary: str = BATCH) -> bytes:
    return ("".join(f"--{boundary}{CRLF}{item}{CRLF}" for item in items) + f"--{boundary}--{CRLF}").encode()


def post_batch(api: WebApi, items: list[str], *, prefer: str | None = None) -> Any:
    headers = {"Content-Type": f"multipart/mixed; boundary={BATCH}"}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", data=batch_body(items), headers=headers)


def patch_part(contact: str, profile: str, *, content_id: str | None = None, url: str | None = None) -> str:
    return part(
        "PATCH",
        url or f"{API_PATH}contacts({contact})",
        bind(profile),
        content_id=content_id,
        headers={"If-Match": "*"},
    )


# -- reading the answer with the standard library ---------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None


def parse(response: Any) -> list[Answer | list[Answer]]:
    """Each top-level part of a ``$batch`` answer; a change set's answer is a list of answers."""
    assert response.status_code == 200, response.text
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_")
    assert response.headers["OData-Version"] == "4.0"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.content
    )
    assert not message.defects
    answers: list[Answer | list[Answer]] = []
    for item in subparts(message):
        if item.get_content_type() == "multipart/mixed":
            assert str(item.get_param("boundary")).startswith("changesetresponse_")
            answers.append([http_answer(p) for p in subparts(item)])
        else:
            answers.append(http_answer(item))
    return answers


def subparts(message: email.message.Message) -> list[email.message.Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    assert all(isinstance(p, email.message.Message) and not p.defects for p in payload)
    return list(payload)


def http_answer(item: email.message.Message) -> Answer:
    assert item.get_content_type() == "application/http"
    assert item["Content-Transfer-Encoding"] == "binary"
    payload = item.get_payload()
    assert isinstance(payload, str)
    head, _, body = payload.partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers["OData-Version"] == "4.0"
    parsed = json.loads(body) if body else None
    if parsed is not None:
        assert headers["Content-Type"].startswith("application/json")
    return Answer(int(status), headers, parsed, item["Content-ID"])


def single(answer: Answer | list[Answer]) -> Answer:
    assert isinstance(answer, Answer)
    return answer


def many(answer: Answer | list[Answer]) -> list[Answer]:
    assert isinstance(answer, list)
    return answer


def not_found(contact: str) -> dict[str, Any]:
    return {"error": {"code": "0x80040217", "message": f"contact With Id = {contact} Does Not Exist"}}


def outer_error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}
    return response.status_code, body["error"]["code"], body["error"]["message"]


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorClient:
    """Overrides the shared fixture with a smaller scene: the tests touch few rows, and it resets faster."""
    client = EmulatorClient(emulator_server.base_url)
    client.reset(contacts=CONTACTS, leads=LEADS, seed=SEED)
    return client


@pytest.fixture
def scene(api: WebApi) -> tuple[list[str], list[str]]:
    create_lookup(api)
    return contact_ids(api), [p["msdynci_customerprofileid"] for p in profiles(api)]


def values(api: WebApi, contacts: list[str]) -> list[str | None]:
    return [read(api, c)[VALUE] for c in contacts]


# -- GETs outside change sets -----------------------------------------------------------------------


def test_gets_outside_change_sets_with_a_long_in_filter(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    chosen = contacts[5:55]
    absent = [str(uuid.uuid4()) for _ in range(150)]
    names = ",".join(f"'{c}'" for c in [*chosen[:25], *absent, *chosen[25:]])
    filter_text = f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{names}])"
    long_url = f"{API_PATH}contacts?$select=contactid&$filter={filter_text}"
    assert len(long_url) > 7500
    encoded_filter = quote("statecode eq 0 and contactid eq " + contacts[0], safe="")
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            part("GET", long_url),
            part("GET", f"{API_PATH}contacts({contacts[1]})?$select=fullname"),
            part("GET", f"{API_PATH}contacts?$select=contactid&$filter={encoded_filter}"),
        ],
    )
    stats = emulator.stats()
    first, second, third = (single(a) for a in parse(response))
    assert first.status == 200
    assert sorted(row["contactid"] for row in first.body["value"]) == sorted(chosen)
    assert first.body["@odata.context"].endswith("$metadata#contacts(contactid)")
    assert first.content_id is None
    assert second.status == 200
    assert second.body["contactid"] == contacts[1]
    assert second.body["fullname"] == read(api, contacts[1])["fullname"]
    assert third.status == 200
    assert [row["contactid"] for row in third.body["value"]] == [contacts[0]]
    assert stats["requests"]["batch"] == 1
    assert stats["operations"]["query"] == 2
    assert stats["rows_read"]["contact"] == len(chosen) + 2


def test_get_errors_are_answered_in_their_part(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    missing = str(uuid.uuid4())
    response = post_batch(
        api,
        [part("GET", f"{API_PATH}contacts({missing})"), part("GET", f"{API_PATH}contacts?$select=nosuch")],
        prefer="odata.continue-on-error",
    )
    first, second = (single(a) for a in parse(response))
    assert (first.status, first.body) == (404, not_found(missing))
    assert second.status == 400
    assert second.body["error"] == {
        "code": "0x80060888",
        "message": "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'.",
    }


# -- change sets ------------------------------------------------------------------------------------


def test_change_set_of_patches(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    emulator.reset_stats()
    response = post_batch(
        api,
        [change_set([patch_part(contacts[i], profile_ids[i], content_id=str(i + 1)) for i in range(3)])],
    )
    [answers] = parse(response)
    answers = many(answers)
    assert [(a.status, a.content_id, a.body) for a in answers] == [
        (204, "1", None),
        (204, "2", None),
        (204, "3", None),
    ]
    for i, answer in enumerate(answers):
        assert answer.headers["OData-EntityId"] == f"{api.api_url}contacts({contacts[i]})"
    stats = emulator.stats()
    assert stats["requests"] == {"batch": 1}
    assert stats["statuses"] == {"200": 1}
    assert stats["operations"] == {"batch": 1, "update": 3}
    assert stats["rows_written"] == {"contact": 3}
    assert stats["per_user"]["hydration-app"]["inner"] == 3
    assert values(api, contacts[:4]) == [*profile_ids[:3], None]


def test_failed_change_set_is_rolled_back(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    missing = str(uuid.uuid4())
    before = {c: read(api, c) for c in contacts[:3]}
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            change_set(
                [
                    patch_part(contacts[0], profile_ids[0], content_id="1"),
                    patch_part(contacts[1], profile_ids[1], content_id="2"),
                    patch_part(missing, profile_ids[2], content_id="3"),
                    patch_part(contacts[2], profile_ids[3], content_id="4"),
                ]
            ),
            part("GET", f"{API_PATH}contacts({contacts[0]})?$select=contactid"),
        ],
    )
    stats = emulator.stats()
    [answer] = parse(response)
    failed = single(answer)
    assert (failed.status, failed.content_id, failed.body) == (404, "3", not_found(missing))
    assert {c: read(api, c) for c in contacts[:3]} == before
    assert error_status(api.get(f"contacts({missing})")) == 404
    assert stats["rows_written"] == {}
    assert stats["per_user"]["hydration-app"].get("rows_written", 0) == 0
    assert stats["operations"] == {"batch": 1, "update": 3}


def error_status(response: Any) -> int:
    return int(outer_error(response)[0])


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    missing = str(uuid.uuid4())
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            patch_part(contacts[0], profile_ids[0]),
            patch_part(missing, profile_ids[1]),
            patch_part(contacts[2], profile_ids[2]),
            change_set([patch_part(contacts[3], profile_ids[3])]),
        ],
    )
    stats = emulator.stats()
    assert "Preference-Applied" not in response.headers
    answers = [single(a) for a in parse(response)]
    assert [(a.status, a.body) for a in answers] == [(204, None), (404, not_found(missing))]
    assert values(api, contacts[:4]) == [profile_ids[0], None, None, None]
    assert stats["operations"] == {"batch": 1, "update": 2}
    assert stats["rows_written"] == {"contact": 1}


def test_with_continue_on_error_later_parts_run(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    missing = str(uuid.uuid4())
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            patch_part(contacts[0], profile_ids[0]),
            patch_part(missing, profile_ids[1]),
            change_set([patch_part(contacts[1], profile_ids[1]), patch_part(missing, profile_ids[1])]),
            change_set(
                [patch_part(contacts[2], profile_ids[2], content_id="a")], boundary="changeset_second"
            ),
            part("GET", f"{API_PATH}contacts({contacts[2]})?$select={VALUE}"),
        ],
        prefer="odata.continue-on-error",
    )
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    first, second, third, fourth, fifth = parse(response)
    assert single(first).status == 204
    assert (single(second).status, single(second).body) == (404, not_found(missing))
    assert (single(third).status, single(third).body) == (404, not_found(missing))
    assert [(a.status, a.content_id) for a in many(fourth)] == [(204, "a")]
    assert (single(fifth).status, single(fifth).body[VALUE]) == (200, profile_ids[2])
    assert values(api, contacts[:3]) == [profile_ids[0], None, profile_ids[2]]
    assert emulator.stats()["rows_written"] == {"contact": 2}


def test_content_id_reference_to_a_created_row(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    _, profile_ids = scene
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            change_set(
                [
                    part("POST", f"{API_PATH}contacts", {"fullname": "Batch Person"}, content_id="1"),
                    part("PATCH", "$1", bind(profile_ids[5]), content_id="2", headers={"If-Match": "*"}),
                ]
            )
        ],
    )
    created, patched = many(parse(response)[0])
    assert (created.status, created.content_id) == (204, "1")
    assert (patched.status, patched.content_id) == (204, "2")
    location = created.headers["OData-EntityId"]
    assert patched.headers["OData-EntityId"] == location
    new = location[len(f"{api.api_url}contacts(") : -1]
    row = read(api, new)
    assert (row["fullname"], row[VALUE], row[PID]) == ("Batch Person", profile_ids[5], None)
    assert emulator.stats()["rows_written"] == {"contact": 2}


def test_content_id_reference_rolled_back_with_its_change_set(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    ghost = str(uuid.uuid4())
    new = str(uuid.uuid4())
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            change_set(
                [
                    part("POST", "contacts", {"contactid": new, "fullname": "Never"}, content_id="1"),
                    part("PATCH", "$1", {f"{NAV}@odata.bind": f"{PROFILES}({ghost})"}, content_id="2"),
                ]
            )
        ],
    )
    failed = single(parse(response)[0])
    assert (failed.status, failed.content_id) == (404, "2")
    assert failed.body["error"]["message"] == f"msdynci_customerprofile With Id = {ghost} Does Not Exist"
    assert error_status(api.get(f"contacts({new})")) == 404
    assert emulator.stats()["rows_written"] == {}


def test_unknown_content_id_reference_fails_its_part(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    _, profile_ids = scene
    response = post_batch(api, [part("PATCH", "$7", bind(profile_ids[0]), headers={"If-Match": "*"})])
    failed = single(parse(response)[0])
    assert failed.status == 400
    assert failed.body["error"]["code"] == "0x80060891"
    assert "$7" in failed.body["error"]["message"]


def test_update_multiple_and_clearing_inside_a_change_set(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    assert api.patch(f"contacts({contacts[3]})", json=bind(profile_ids[3]), headers={"If-Match": "*"}).ok
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c, **bind(profile_ids[i])}
        for i, c in enumerate(contacts[:3])
    ]
    emulator.reset_stats()
    response = post_batch(
        api,
        [
            change_set(
                [
                    part("POST", "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", {"Targets": targets}),
                    part("DELETE", f"contacts({contacts[3]})/{NAV}/$ref"),
                    part("DELETE", f"contacts({contacts[4]})"),
                ]
            )
        ],
    )
    stats = emulator.stats()
    assert [a.status for a in many(parse(response)[0])] == [204, 204, 204]
    assert values(api, contacts[:4]) == [*profile_ids[:3], None]
    assert error_status(api.get(f"contacts({contacts[4]})")) == 404
    assert stats["operations"] == {"batch": 1, "update_multiple": 1, "disassociate": 1, "delete": 1}
    assert stats["rows_written"] == {"contact": 5}


# -- inner URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["absolute", "absolute_path", "relative"])
def test_inner_url_forms(api: WebApi, scene: tuple[list[str], list[str]], form: str) -> None:
    contacts, profile_ids = scene
    path = f"contacts({contacts[7]})"
    url = {"absolute": api.api_url + path, "absolute_path": API_PATH + path, "relative": path}[form]
    response = post_batch(
        api,
        [
            change_set([patch_part(contacts[7], profile_ids[7], url=url)]),
            part("GET", f"{url}?$select=contactid,{VALUE}"),
        ],
    )
    patched, got = parse(response)
    assert [a.status for a in many(patched)] == [204]
    assert many(patched)[0].headers["OData-EntityId"] == f"{api.api_url}{path}"
    assert single(got).status == 200
    assert single(got).body[VALUE] == profile_ids[7]


def test_inner_url_outside_the_api_is_refused_in_its_part(
    api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    response = post_batch(api, [part("GET", f"/api/data/v9.1/contacts({contacts[0]})")])
    failed = single(parse(response)[0])
    assert failed.status == 400
    assert failed.body["error"]["code"] == "0x80060888"


def test_nested_batch_is_refused(api: WebApi, scene: tuple[list[str], list[str]]) -> None:
    contacts, profile_ids = scene
    inner_body = batch_body([patch_part(contacts[0], profile_ids[0])], boundary="batch_inner").decode()
    nested = CRLF.join(
        [
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"POST {API_PATH}$batch HTTP/1.1",
            "Content-Type: multipart/mixed; boundary=batch_inner",
            "",
            inner_body,
        ]
    )
    response = post_batch(api, [nested])
    failed = single(parse(response)[0])
    assert failed.status == 400
    assert failed.body["error"]["message"] == "A $batch request cannot contain another $batch request."
    assert read(api, contacts[0])[VALUE] is None


# -- limits and malformed batches -------------------------------------------------------------------


def test_1000_requests_are_accepted(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, _ = scene
    emulator.reset_stats()
    items = [part("GET", f"contacts({contacts[i % CONTACTS]})?$select=contactid") for i in range(1000)]
    answers = [single(a) for a in parse(post_batch(api, items))]
    assert len(answers) == 1000
    assert all(a.status == 200 for a in answers)
    assert answers[999].body["contactid"] == contacts[999 % CONTACTS]
    assert emulator.stats()["operations"] == {"batch": 1, "retrieve": 1000}


@pytest.mark.parametrize("in_change_set", [0, 1, 1001])
def test_1001_requests_are_refused(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]], in_change_set: int
) -> None:
    contacts, profile_ids = scene
    patches = [patch_part(contacts[i % CONTACTS], profile_ids[0]) for i in range(1001)]
    items = patches[in_change_set:]
    if in_change_set:
        items.insert(0, change_set(patches[:in_change_set]))
    emulator.reset_stats()
    response = post_batch(api, items)
    assert outer_error(response) == (
        400,
        "0x80060891",
        "The number of requests in the batch exceeds the limit of 1000.",
    )
    stats = emulator.stats()
    assert stats["rows_written"] == {}
    assert stats["operations"] == {"batch": 1}
    assert read(api, contacts[0])[VALUE] is None


def test_get_inside_a_change_set_is_refused(
    emulator: EmulatorClient, api: WebApi, scene: tuple[list[str], list[str]]
) -> None:
    contacts, profile_ids = scene
    response = post_batch(
        api,
        [
            patch_part(contacts[0], profile_ids[0]),
            change_set([patch_part(contacts[1], profile_ids[1]), part("GET", f"contacts({contacts[1]})")]),
        ],
    )
    assert outer_error(response) == (400, "0x80060891", "GET requests are not allowed inside a change set.")
    assert values(api, contacts[:2]) == [None, None]
    assert emulator.stats()["rows_written"] == {}


GOOD_PART = part("GET", "WhoAmI")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (batch_body([GOOD_PART]), "application/json"),
        (batch_body([GOOD_PART]), "multipart/mixed"),
        (batch_body([GOOD_PART]), "multipart/mixed; boundary=batch_other"),
        (batch_body([GOOD_PART])[:-12], f"multipart/mixed; boundary={BATCH}"),
        (b"", f"multipart/mixed; boundary={BATCH}"),
        (b"\xff\xfe\x00garbage", f"multipart/mixed; boundary={BATCH}"),
        (batch_body(["Content-Transfer-Encoding: binary\r\n\r\nGET WhoAmI HTTP/1.1\r\n"]), None),
        (batch_body([GOOD_PART.replace("Content-Transfer-Encoding: binary\r\n", "")]), None),
        (batch_body([GOOD_PART.replace("HTTP/1.1", "HTTP/2")]), None),
        (batch_body([GOOD_PART.replace("GET WhoAmI HTTP/1.1", "GET WhoAmI")]), None),
        (batch_body([GOOD_PART.replace("GET WhoAmI", "FETCH WhoAmI")]), None),
        (batch_body([GOOD_PART.replace("application/http", "text/plain")]), None),
        (batch_body([GOOD_PART.replace("\r\n\r\nGET", "\r\nGET")]), None),
        (batch_body([change_set([])]), None),
        (batch_body([change_set([change_set([GOOD_PART], "changeset_inner")])]), None),
        (batch_body([part("GET", "WhoAmI", content_id="1"), part("GET", "WhoAmI", content_id="1")]), None),
        (batch_body([part("GET", "WhoAmI", content_id="a b")]), None),
    ],
)
def test_malformed_batches_are_400_never_500(
    emulator: EmulatorClient, api: WebApi, body: bytes, content_type: str | None
) -> None:
    emulator.reset_stats()
    response = api.post(
        "$batch", data=body, headers={"Content-Type": content_type or f"multipart/mixed; boundary={BATCH}"}
    )
    status, code, message = outer_error(response)
    assert (status, code) == (400, "0x80060891")
    assert message
    assert emulator.stats()["operations"] == {"batch": 1}


def test_batch_without_content_type_is_400(api: WebApi) -> None:
    response = api.post("$batch", data=batch_body([GOOD_PART]))
    assert outer_error(response)[:2] == (400, "0x80060891")


def test_empty_batch_answers_an_empty_multipart(api: WebApi) -> None:
    response = api.post(
        "$batch",
        data=f"--{BATCH}--\r\n".encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={BATCH}"},
    )
    assert response.status_code == 200
    boundary = response.headers["Content-Type"].removeprefix("multipart/mixed; boundary=")
    assert boundary.startswith("batchresponse_")
    assert response.content == f"--{boundary}--\r\n".encode()


def test_batch_needs_post(api: WebApi) -> None:
    response = api.get("$batch")
    assert outer_error(response) == (404, "0x8006088a", "Resource not found for the segment '$batch'.")
