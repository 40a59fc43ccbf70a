"""The state store's contract, run against the in-memory fake and against Azurite alike."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from devtools.azurite import Azurite
from hydration.storage import (
    AzureStateTables,
    ConflictError,
    InvalidStorageKeyError,
    MemoryStateTables,
    StorageUnavailableError,
)
from hydration.storage.entities import validate_table_name
from hydration.storage.tables import PAGE_SIZE, StateTables
from tests.storage.conftest import TablesEnv, unique

# --- ETags, claims, deletes ------------------------------------------------------------------------


def test_insert_get_and_insert_again_conflicts(tables: StateTables, table: str) -> None:
    assert tables.get(table, "p", "r") is None
    etag = tables.insert(table, "p", "r", {"status": "Running"})
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity == {"status": "Running"}
    assert got.etag == etag
    with pytest.raises(ConflictError):
        tables.insert(table, "p", "r", {"status": "Other"})
    assert tables.get(table, "p", "r") == got


def test_two_replaces_with_the_same_etag_second_loses(tables: StateTables, table: str) -> None:
    etag = tables.insert(table, "p", "r", {"seq": 1})
    new_etag = tables.replace(table, "p", "r", {"seq": 2}, etag)
    assert new_etag != etag
    with pytest.raises(ConflictError):
        tables.replace(table, "p", "r", {"seq": 3}, etag)
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity == {"seq": 2}
    assert got.etag == new_etag


def test_replace_removes_properties_not_given(tables: StateTables, table: str) -> None:
    etag = tables.insert(table, "p", "r", {"a": 1, "b": "x"})
    tables.replace(table, "p", "r", {"a": 2}, etag)
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity == {"a": 2}


def test_replace_of_a_missing_entity_conflicts(tables: StateTables, table: str) -> None:
    etag = tables.insert(table, "p", "r", {"a": 1})
    tables.delete(table, "p", "r")
    with pytest.raises(ConflictError):
        tables.replace(table, "p", "r", {"a": 2}, etag)


def test_upsert_creates_then_replaces_and_changes_the_etag(tables: StateTables, table: str) -> None:
    first = tables.upsert(table, "p", "r", {"a": 1, "b": 2})
    second = tables.upsert(table, "p", "r", {"a": 3})
    assert first != second
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity == {"a": 3}
    assert got.etag == second


def test_delete_with_etag(tables: StateTables, table: str) -> None:
    etag = tables.insert(table, "p", "r", {"a": 1})
    newer = tables.replace(table, "p", "r", {"a": 2}, etag)
    with pytest.raises(ConflictError):
        tables.delete(table, "p", "r", etag)
    assert tables.get(table, "p", "r") is not None
    tables.delete(table, "p", "r", newer)
    assert tables.get(table, "p", "r") is None


def test_delete_of_a_missing_entity_is_fine(tables: StateTables, table: str) -> None:
    tables.delete(table, "p", "never")
    etag = tables.insert(table, "p", "r", {"a": 1})
    tables.delete(table, "p", "r")
    tables.delete(table, "p", "r", etag)  # gone already: what the caller wanted


def test_concurrent_claims_have_one_winner(tables: StateTables, table: str) -> None:
    etag = tables.insert(table, "p", "checkpoint", {"seq": 0})
    outcomes: list[str] = []
    lock = threading.Lock()

    def claim(worker: int) -> None:
        for attempt in ("insert", "replace"):
            try:
                if attempt == "insert":
                    tables.insert(table, "p", "claim", {"worker": worker})
                else:
                    tables.replace(table, "p", "checkpoint", {"seq": 1, "worker": worker}, etag)
                result = "won"
            except ConflictError:
                result = "lost"
            with lock:
                outcomes.append(f"{attempt}:{result}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("insert:won") == 1
    assert outcomes.count("replace:won") == 1
    assert len(outcomes) == 12


# --- values -----------------------------------------------------------------------------------------


def test_values_round_trip(tables: StateTables, table: str) -> None:
    moment = datetime(2024, 2, 29, 23, 30, 5, 123456, tzinfo=timezone(timedelta(hours=-5)))
    entity = {
        "text": "héllo 😀 'quoted'",
        "empty": "",
        "small": 7,
        "negative": -(2**31),
        "big": 2**40,
        "biggest": 2**63 - 1,
        "smallest": -(2**63),
        "ratio": 0.1,
        "whole": 2.0,
        "yes": True,
        "no": False,
        "when": moment,
        "details": {"pages": 3, "reasons": ["a", "b"], "nested": {"x": None}},
        "retry": [1, "two", 3.5],
        "nothing": None,
    }
    tables.insert(table, "p", "r", entity)
    got = tables.get(table, "p", "r")
    assert got is not None
    expected = {k: v for k, v in entity.items() if v is not None}
    expected["when"] = datetime(2024, 3, 1, 4, 30, 5, 123456, tzinfo=UTC)
    assert got.entity == expected
    assert {k: type(v) for k, v in got.entity.items()} == {k: type(v) for k, v in expected.items()}
    assert got.entity["when"].utcoffset() == timedelta(0)
    assert "nothing" not in got.entity


def test_values_read_back_from_query_as_from_get(tables: StateTables, table: str) -> None:
    entity = {"big": 2**40, "when": datetime(2025, 1, 1, tzinfo=UTC), "details": {"a": 1}}
    tables.insert(table, "p", "r", entity)
    [(rk, versioned)] = list(tables.query(table, "p"))
    assert rk == "r"
    assert versioned == tables.get(table, "p", "r")
    assert type(versioned.entity["when"]) is datetime


def test_longest_string_is_accepted_and_longer_refused(tables: StateTables, table: str) -> None:
    longest = "é" * (32 * 1024)  # 64 KiB as UTF-16
    tables.insert(table, "p", "r", {"s": longest})
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity["s"] == longest
    with pytest.raises(ValueError, match="64 KiB"):
        tables.upsert(table, "p", "r", {"s": longest + "x"})
    with pytest.raises(ValueError, match="64 KiB"):
        tables.upsert(table, "p", "r", {"s": "😀" * (16 * 1024) + "x"})  # surrogate pairs count twice
    with pytest.raises(ValueError, match="64 KiB"):
        tables.upsert(table, "p", "r", {"d": {"s": longest}})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (datetime(2024, 1, 1), ValueError),  # naive
        (datetime(1600, 12, 31, tzinfo=UTC), ValueError),
        (2**63, ValueError),
        (-(2**63) - 1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (b"bytes", TypeError),
        ({1, 2}, TypeError),
        ({"when": datetime(2024, 1, 1, tzinfo=UTC)}, TypeError),  # not JSON
    ],
)
def test_unsupported_values_are_refused_before_sending(
    tables: StateTables, table: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        tables.insert(table, "p", "r", {"v": value})
    assert tables.get(table, "p", "r") is None


@pytest.mark.parametrize(
    "name", ["PartitionKey", "RowKey", "Timestamp", "etag", "has-dash", "1digit", "x__json", "", "a" * 256]
)
def test_reserved_or_invalid_property_names_are_refused(tables: StateTables, table: str, name: str) -> None:
    with pytest.raises(ValueError, match="property name"):
        tables.insert(table, "p", "r", {name: 1})


def test_too_many_properties_are_refused(tables: StateTables, table: str) -> None:
    tables.insert(table, "p", "ok", {f"p{n}": n for n in range(252)})
    with pytest.raises(ValueError, match="252"):
        tables.insert(table, "p", "r", {f"p{n}": n for n in range(253)})


def test_oversized_entity_is_refused(tables: StateTables, table: str) -> None:
    with pytest.raises(ValueError, match="1 MiB"):
        tables.insert(table, "p", "r", {f"p{n}": "x" * 32000 for n in range(20)})


# --- keys and table names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["a/b", "a\\b", "a#b", "a?b", "a\x00", "tab\t", "\x7f", "\x85", "a" * 513, "😀" * 257]
)
def test_invalid_keys_are_refused(tables: StateTables, table: str, bad: str) -> None:
    for call in (
        lambda: tables.insert(table, bad, "r", {}),
        lambda: tables.insert(table, "p", bad, {}),
        lambda: tables.upsert(table, "p", bad, {}),
        lambda: tables.get(table, "p", bad),
        lambda: tables.delete(table, bad, "r"),
        lambda: tables.query(table, bad),
        lambda: tables.delete_partition(table, bad),
    ):
        with pytest.raises(InvalidStorageKeyError):
            call()


def test_invalid_key_error_is_a_value_error() -> None:
    assert issubclass(InvalidStorageKeyError, ValueError)


@pytest.mark.parametrize("key", ["a" * 512, "😀" * 256, "", "it's % + & = ; : @ , $ é", "space in key"])
def test_unusual_but_valid_keys_work(tables: StateTables, table: str, key: str) -> None:
    tables.insert(table, key, key, {"k": key})
    got = tables.get(table, key, key)
    assert got is not None
    assert got.entity == {"k": key}
    assert [rk for rk, _ in tables.query(table, key)] == [key]
    tables.delete(table, key, key)
    assert tables.get(table, key, key) is None


@pytest.mark.parametrize("name", ["ab", "1abc", "a-bc", "a_bc", "a" * 64, "tables", "Tables", "", "héllo"])
def test_invalid_table_names_are_refused(tables: StateTables, name: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        tables.get(name, "p", "r")
    with pytest.raises(ValueError, match="table name"):
        tables.insert(name, "p", "r", {})


def test_valid_table_names() -> None:
    for name in ("abc", "Runs", "A" + "b1" * 31):
        assert validate_table_name(name) == name


def test_tables_are_created_on_first_use_by_each_instance(tables_env: TablesEnv) -> None:
    tables, table = tables_env.tables, tables_env.table
    assert tables.get(table, "p", "r") is None  # creates it
    tables.insert(table, "p", "r", {"a": 1})
    if tables_env.kind == "azure":
        assert tables_env.connection_string is not None
        again = AzureStateTables.from_connection_string(tables_env.connection_string)
        again.insert(table, "p", "s", {"a": 2})  # the table exists already: fine
        assert [rk for rk, _ in again.query(table, "p")] == ["r", "s"]


# --- query and partitions ----------------------------------------------------------------------------


def test_query_orders_by_row_key_as_the_service_does(tables: StateTables, table: str) -> None:
    keys = ["b", "a", "B", "a b", "é", "z\ue000", "z😀", "10", "9", "'q'"]
    for rk in keys:
        tables.insert(table, "p", rk, {"rk": rk})
    tables.insert(table, "other", "a", {"rk": "elsewhere"})
    got = list(tables.query(table, "p"))
    assert [rk for rk, _ in got] == ["'q'", "10", "9", "B", "a", "a b", "b", "z😀", "z\ue000", "é"]
    assert all(v.entity == {"rk": rk} for rk, v in got)
    assert list(tables.query(table, "empty")) == []


def test_query_pages_through_more_than_a_thousand(tables_env: TablesEnv) -> None:
    table = tables_env.table
    keys = [f"{n:05d}" for n in range(PAGE_SIZE + 234)]
    tables_env.bulk_insert(table, "p", keys[::-1])
    rows = tables_env.tables.query(table, "p")
    assert tables_env.queries_sent == []  # nothing is fetched before iterating
    got = [rk for rk, _ in itertools.islice(rows, PAGE_SIZE)]
    if tables_env.kind == "azure":
        assert len(tables_env.queries_sent) == 1  # one page held at a time: bounded memory
    got += [rk for rk, _ in rows]
    assert got == keys
    if tables_env.kind == "azure":
        assert len(tables_env.queries_sent) == 2


def test_delete_partition_over_many_transactions(tables_env: TablesEnv) -> None:
    tables, table = tables_env.tables, tables_env.table
    tables_env.bulk_insert(table, "doomed", [f"r{n:04d}" for n in range(250)])
    tables_env.bulk_insert(table, "kept", ["a", "b"])
    assert tables.delete_partition(table, "doomed") == 250
    assert list(tables.query(table, "doomed")) == []
    assert [rk for rk, _ in tables.query(table, "kept")] == ["a", "b"]
    assert tables.delete_partition(table, "doomed") == 0


def test_memory_etags_differ_across_tables_and_writes() -> None:
    tables = MemoryStateTables()
    etags = {
        tables.insert("one", "p", "r", {}),
        tables.insert("two", "p", "r", {}),
        tables.upsert("one", "p", "r", {}),
    }
    assert len(etags) == 3


# --- Azure specifics -------------------------------------------------------------------------------


@pytest.mark.integration
def test_azure_outage_raises_unavailable_then_recovers(azurite_server: Azurite) -> None:
    tables = AzureStateTables.from_connection_string(azurite_server.connection_string, retry_total=0)
    table = unique("t")
    etag = tables.insert(table, "p", "r", {"a": 1})
    azurite_server.stop()
    try:
        for call in (
            lambda: tables.get(table, "p", "r"),
            lambda: tables.insert(table, "p", "s", {"a": 1}),
            lambda: tables.replace(table, "p", "r", {"a": 2}, etag),
            lambda: list(tables.query(table, "p")),
            lambda: tables.delete_partition(table, "p"),
            lambda: tables.get(unique("t"), "p", "r"),  # table creation too
        ):
            with pytest.raises(StorageUnavailableError):
                call()
    finally:
        azurite_server.start()
    tables.replace(table, "p", "r", {"a": 2}, etag)
    got = tables.get(table, "p", "r")
    assert got is not None
    assert got.entity == {"a": 2}
