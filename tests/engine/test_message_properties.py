"""Property-based tests of the queue message: any text decodes to a valid message or raises MessageError.

A queue message is input from outside the process (anyone with the queue's role can send one), so the
decoder is tried on arbitrary text, arbitrary JSON and near-valid messages with one field of any type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hydration.messages import KINDS, MAX_TEXT, VERSION, MessageError, TaskMessage, is_run_id

FAST = settings(max_examples=150, deadline=None, database=None)
FIELDS = ("v", "kind", "run", "table", "seq")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
RUN_IDS = st.builds(
    lambda moment, suffix: f"{moment:%Y%m%dT%H%M%SZ}-{suffix}",
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)),
    st.from_regex(r"\A(?:[0-9a-f]{8}|[0-9a-f]{12})\Z"),
)
TABLES = st.from_regex(r"\A[a-z][a-z0-9_]{0,127}\Z")
STEPS = st.one_of(st.integers(0, 9_999_999), st.just(9_999_999))
MESSAGES = st.builds(TaskMessage, RUN_IDS, TABLES, STEPS, st.sampled_from(KINDS))


def decodes_or_refuses(text: Any) -> TaskMessage | None:
    """The decoded message, or None when it raised ``MessageError`` (any other exception fails)."""
    try:
        message = TaskMessage.decode(text)
    except MessageError:
        return None
    assert isinstance(message, TaskMessage)
    assert is_run_id(message.run_id)
    return message


@FAST
@given(MESSAGES)
def test_encode_then_decode_is_the_same_message(message: TaskMessage) -> None:
    text = message.encode()
    assert len(text) <= MAX_TEXT
    assert TaskMessage.decode(text) == message


@FAST
@given(MESSAGES)
def test_a_continuation_is_the_next_step_or_refused_at_the_last(message: TaskMessage) -> None:
    try:
        following = message.next()
    except MessageError:
        assert message.seq == 9_999_999  # the last step a message may name
        return
    assert TaskMessage.decode(following.encode()) == following
    assert (following.run_id, following.table, following.seq, following.kind) == (
        message.run_id,
        message.table,
        message.seq + 1,
        message.kind,
    )


@FAST
@given(st.text(max_size=MAX_TEXT + 10))
@example("[" * 3000)
@example('{"v": 1e400}')
@example('{"v": 1, "kind": "hydrate", "run": "20260230T000000Z-00000000", "table": "contact", "seq": 0}')
def test_any_text_decodes_or_raises_message_error(text: str) -> None:
    decodes_or_refuses(text)


@FAST
@given(JSON)
def test_any_json_decodes_or_raises_message_error(value: Any) -> None:
    decodes_or_refuses(json.dumps(value))


@FAST
@given(MESSAGES, st.sampled_from(FIELDS), JSON)
def test_a_message_with_one_field_of_any_value_is_valid_or_refused(
    message: TaskMessage, name: str, value: Any
) -> None:
    payload = json.loads(message.encode())
    payload[name] = value
    decoded = decodes_or_refuses(json.dumps(payload))
    if decoded is not None:  # only a value that is itself valid can get through, and it is kept
        assert payload == json.loads(decoded.encode())
        assert type(payload[name]) in (int, str)
        assert payload["v"] == VERSION


@FAST
@given(
    MESSAGES,
    st.sets(st.sampled_from(FIELDS), min_size=1),
    st.dictionaries(st.text(max_size=5), JSON, max_size=2),
)
def test_missing_or_extra_fields_are_refused(
    message: TaskMessage, dropped: set[str], extra: dict[str, Any]
) -> None:
    payload = {k: v for k, v in json.loads(message.encode()).items() if k not in dropped}
    payload.update({k: v for k, v in extra.items() if k not in FIELDS})
    assert decodes_or_refuses(json.dumps(payload)) is None


@FAST
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_what_is_not_text_is_refused(value: Any) -> None:
    assert decodes_or_refuses(value) is None
