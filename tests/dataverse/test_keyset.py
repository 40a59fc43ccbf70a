"""Key-set paging ends only on the server's word, and a looping server is stopped with a clear error."""

from __future__ import annotations

import pytest

from hydration.dataverse.keyset import MAX_EMPTY_PAGES, KeysetPaginator
from hydration.dataverse.paging import PagingLoopError

LINK = "https://org.example/api/data/v9.2/contacts?$skiptoken=x"


def test_a_short_page_with_a_next_link_is_not_the_last() -> None:
    pager = KeysetPaginator()
    pager.advance("k-03", LINK)  # 3 rows of the 5,000 asked for, and the server says more
    assert pager.has_more
    assert pager.cursor == "k-03"
    assert pager.follow is None


def test_the_sequence_ends_only_without_a_next_link() -> None:
    pager = KeysetPaginator("k-00")
    pager.advance("k-10", LINK)
    pager.advance("k-20", None)
    assert not pager.has_more
    assert pager.cursor == "k-20"


def test_an_empty_last_page_ends_the_sequence_and_keeps_the_cursor() -> None:
    pager = KeysetPaginator("k-10")
    pager.advance(None, None)
    assert not pager.has_more
    assert pager.cursor == "k-10"
    assert pager.follow is None


def test_an_empty_page_with_a_next_link_is_followed_as_given() -> None:
    pager = KeysetPaginator("k-10")
    pager.advance(None, LINK)
    assert pager.has_more
    assert pager.follow == LINK
    assert pager.cursor == "k-10"
    pager.advance("k-11", None)
    assert pager.follow is None
    assert pager.cursor == "k-11"


def test_a_page_ending_where_an_earlier_one_ended_is_no_progress() -> None:
    pager = KeysetPaginator("k-10")
    with pytest.raises(PagingLoopError, match="no progress"):
        pager.advance("k-10", LINK)
    pager = KeysetPaginator()
    pager.advance("k-1", LINK)
    pager.advance("k-2", LINK)
    with pytest.raises(PagingLoopError, match="no progress"):
        pager.advance("k-1", LINK)


def test_keys_are_compared_for_equality_only_as_the_server_orders_guids_its_own_way() -> None:
    pager = KeysetPaginator("ffffffff-0000-0000-0000-000000000000")
    pager.advance("00000000-0000-0000-0000-000000000001", LINK)  # "smaller" as text, later on the server
    assert pager.has_more


def test_the_same_next_link_on_empty_pages_is_a_loop() -> None:
    pager = KeysetPaginator()
    pager.advance(None, LINK)
    with pytest.raises(PagingLoopError, match="empty pages"):
        pager.advance(None, LINK)


def test_endless_empty_pages_are_a_loop() -> None:
    pager = KeysetPaginator()
    for i in range(MAX_EMPTY_PAGES):
        pager.advance(None, f"{LINK}{i}")
    with pytest.raises(PagingLoopError, match="empty pages"):
        pager.advance(None, f"{LINK}-last")
