"""The queue message: round trip, continuation, and strict rejection of everything else."""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

import pytest

from hydration.messages import KINDS, MAX_TEXT, VERSION, MessageError, TaskMessage

RUN = "20250301T120000Z-0123abcd"
RUN_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
TABLE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,127}")


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"v": VERSION, "kind": "hydrate", "run": RUN, "table": "contact", "seq": 0}
    base.update(changes)
    return base


def text(**changes: Any) -> str:
    return json.dumps(payload(**changes))


# -- round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seq", [0, 1, 42, 9_999_999])
@pytest.mark.parametrize("table", ["contact", "lead", "msdyn_customer_asset", "a", "x" * 128])
def test_round_trip(kind: str, seq: int, table: str) -> None:
    message = TaskMessage(RUN, table, seq, kind)
    assert TaskMessage.decode(message.encode()) == message


def test_encoding_is_the_versioned_json_object() -> None:
    assert json.loads(TaskMessage(RUN, "contact", 3).encode()) == {
        "v": 1,
        "kind": "hydrate",
        "run": RUN,
        "table": "contact",
        "seq": 3,
    }


def test_decode_ignores_field_order_and_whitespace() -> None:
    raw = '{ "seq" : 5 , "table":"lead", "run": "' + RUN + '", "kind":"plan", "v":1 }'
    assert TaskMessage.decode(raw) == TaskMessage(RUN, "lead", 5, "plan")


def test_default_kind_is_hydrate() -> None:
    assert TaskMessage(RUN, "contact", 0).kind == "hydrate"


def test_message_is_frozen() -> None:
    message = TaskMessage(RUN, "contact", 0)
    with pytest.raises(AttributeError):
        message.seq = 1  # type: ignore[misc]


# -- continuation ----------------------------------------------------------------------------------


def test_next_is_the_same_pass_one_step_on() -> None:
    message = TaskMessage(RUN, "contact", 7, "plan")
    assert message.next() == TaskMessage(RUN, "contact", 8, "plan")
    assert message.next().next().seq == 9
    assert message.seq == 7  # unchanged


def test_next_of_the_last_step_number_is_refused() -> None:
    with pytest.raises(MessageError):
        TaskMessage(RUN, "contact", 9_999_999).next()


# -- malformed input -------------------------------------------------------------------------------

HOSTILE_TABLES = [
    "contact'); drop table",
    "contact') or 1 eq 1",
    "../x",
    "..",
    "contact/../account",
    "contacts?$select=*",
    "Contact",
    "CONTACT",
    "contact ",
    " contact",
    "con tact",
    "contact%27",
    "contact\x00",
    "_contact",
    "1contact",
    "contact-x",
    "contàct",
    "",
    "x" * 129,
]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{",
        "{'v': 1}",
        "[]",
        "[1, 2]",
        '"a string"',
        "42",
        "null",
        "true",
        "1e999",
    ],
)
def test_not_a_json_object(raw: str) -> None:
    with pytest.raises(MessageError):
        TaskMessage.decode(raw)


@pytest.mark.parametrize("raw", [None, "", "x" * (MAX_TEXT + 1), b'{"v":1}', 42, ["a"]])
def test_none_empty_too_long_or_not_text(raw: Any) -> None:
    with pytest.raises(MessageError, match="empty, too long or not text"):
        TaskMessage.decode(raw)


def test_text_of_exactly_max_length_is_parsed() -> None:
    raw = text()
    padded = raw[:-1] + " " * (MAX_TEXT - len(raw)) + "}"
    assert len(padded) == MAX_TEXT
    assert TaskMessage.decode(padded) == TaskMessage(RUN, "contact", 0)


@pytest.mark.parametrize("version", [0, 2, -1, "1", None, [1], {"v": 1}])
def test_wrong_version(version: Any) -> None:
    with pytest.raises(MessageError, match="version"):
        TaskMessage.decode(text(v=version))


def test_missing_version() -> None:
    body = payload()
    del body["v"]
    with pytest.raises(MessageError, match="version"):
        TaskMessage.decode(json.dumps(body))


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_one(version: Any) -> None:
    with pytest.raises(MessageError):
        TaskMessage.decode(text(v=version))


@pytest.mark.parametrize("field", ["kind", "run", "table", "seq"])
def test_missing_field(field: str) -> None:
    body = payload()
    del body[field]
    with pytest.raises(MessageError, match="exactly the fields"):
        TaskMessage.decode(json.dumps(body))


@pytest.mark.parametrize("extra", ["extra", "url", "V", "run_id", ""])
def test_extra_field(extra: str) -> None:
    with pytest.raises(MessageError, match="exactly the fields"):
        TaskMessage.decode(text(**{extra: "x"}))


@pytest.mark.parametrize(
    "run",
    [
        "",
        "run-1",
        "20250301T120000Z-0123ABCD",
        "20250301T120000Z-0123abc",
        "20250301T120000Z-0123abcde",
        "20250301 120000Z-0123abcd",
        "20250301T120000-0123abcd",
        "x20250301T120000Z-0123abcd",
        "../20250301T120000Z-0123abcd",
        None,
        12345678,
        ["20250301T120000Z-0123abcd"],
    ],
)
def test_bad_run_id(run: Any) -> None:
    with pytest.raises(MessageError, match="run id"):
        TaskMessage.decode(text(run=run))


@pytest.mark.parametrize("table", [*HOSTILE_TABLES, None, 1, ["contact"], {"t": "contact"}])
def test_hostile_or_invalid_table_name(table: Any) -> None:
    with pytest.raises(MessageError, match="table name"):
        TaskMessage.decode(text(table=table))


@pytest.mark.parametrize(("field", "value"), [("table", "contact\n"), ("run", RUN + "\n")])
def test_trailing_newline_is_refused(field: str, value: str) -> None:
    with pytest.raises(MessageError):
        TaskMessage.decode(text(**{field: value}))


@pytest.mark.parametrize("seq", [-1, -10_000_000, 10_000_000, 10**30, True, False, 1.0, 0.5, "1", None, [0]])
def test_bad_step_number(seq: Any) -> None:
    with pytest.raises(MessageError, match="step number"):
        TaskMessage.decode(text(seq=seq))


@pytest.mark.parametrize("kind", ["", "Hydrate", "reconcile", "delete", None, 1, ["hydrate"], {"k": 1}])
def test_unknown_kind(kind: Any) -> None:
    with pytest.raises(MessageError, match="kind"):
        TaskMessage.decode(text(kind=kind))


def test_error_messages_are_bounded() -> None:
    with pytest.raises(MessageError) as caught:
        TaskMessage.decode(text(table="x" * 3000))
    assert len(str(caught.value)) <= 120


def test_message_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


@pytest.mark.parametrize(
    ("run", "table", "seq", "kind"), [(RUN, "Contact", 0, "hydrate"), ("x", "a", 0, "plan")]
)
def test_constructor_validates_too(run: str, table: str, seq: int, kind: str) -> None:
    with pytest.raises(MessageError):
        TaskMessage(run, table, seq, kind)


@pytest.mark.parametrize("raw", ["[" * 4000, "[" * 2000 + "]" * 2000])
def test_deeply_nested_json_is_a_message_error(raw: str) -> None:
    with pytest.raises(MessageError):
        TaskMessage.decode(raw)


# -- fuzz ------------------------------------------------------------------------------------------


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, 1, -1, 2**63, 10_000_000, rng.randrange(-(10**12), 10**12)])
    if choice == 3:
        return rng.choice([0.0, -0.5, 1.5, 1e308, rng.random()])
    if choice in (4, 5):
        return _random_text(rng)
    if choice in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_random_text(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _random_text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n\x00éü中\u2028\ud7ff"
    pick = rng.randrange(5)
    if pick == 0:
        return rng.choice([RUN, "contact", "hydrate", "plan", "v", "seq", "run", "table", "kind"])
    if pick == 1:
        return "".join(rng.choice(string.ascii_lowercase + "_") for _ in range(rng.randrange(1, 12)))
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))


def _mutated_message(rng: random.Random) -> str:
    body = payload(seq=rng.randrange(0, 100))
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(3)
        key = rng.choice([*body.keys(), "extra"]) if body else "v"
        if action == 0:
            body[key] = _random_value(rng)
        elif action == 1 and key in body:
            del body[key]
        else:
            body[_random_text(rng)] = _random_value(rng)
    return json.dumps(body)


def _mangled_text(rng: random.Random, raw: str) -> str:
    chars = list(raw)
    for _ in range(rng.randrange(1, 6)):
        position = rng.randrange(len(chars) + 1)
        action = rng.randrange(3)
        if action == 0 and chars:
            del chars[min(position, len(chars) - 1)]
        elif action == 1:
            chars.insert(position, rng.choice(string.printable))
        elif chars:
            chars[min(position, len(chars) - 1)] = rng.choice(string.printable)
    return "".join(chars)


def _check(raw: Any) -> None:
    try:
        message = TaskMessage.decode(raw)
    except MessageError:
        return
    # anything accepted is a well-formed message that survives its own round trip
    assert TABLE_PATTERN.fullmatch(message.table)
    assert RUN_PATTERN.fullmatch(message.run_id)
    assert message.kind in KINDS
    assert type(message.seq) is int
    assert 0 <= message.seq < 10_000_000
    assert TaskMessage.decode(message.encode()) == message


def test_fuzz_only_message_error_escapes() -> None:
    rng = random.Random(20250301)
    for _ in range(3000):
        _check(_mutated_message(rng))
        _check(_mangled_text(rng, text(seq=rng.randrange(1000))))
        _check(json.dumps(_random_value(rng)))
        _check(_random_text(rng))
