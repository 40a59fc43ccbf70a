"""Backoff: a pure function of the attempt and the server's Retry-After."""

from __future__ import annotations

import random

import pytest

from hydration.dataverse.backoff import delay, floor


@pytest.mark.parametrize("retry_after", [3.0, 7.5, 60.0, 300.0])
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_retry_after_above_the_floor_is_honoured_exactly(attempt: int, retry_after: float) -> None:
    # not jittered, not capped: service protection counts on it
    assert delay(attempt, retry_after=retry_after, cap=30.0, rng=random.Random(1)) == retry_after


@pytest.mark.parametrize("retry_after", [0.0, 0.1, -5.0])
@pytest.mark.parametrize(("attempt", "least"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 15.0)])
def test_a_short_retry_after_never_waits_less_than_the_floor(
    attempt: int, least: float, retry_after: float
) -> None:
    assert floor(attempt) == least
    assert delay(attempt, retry_after=retry_after) == least


def test_retry_after_zero_on_every_attempt_still_backs_off() -> None:
    waits = [delay(a, retry_after=0.0) for a in range(1, 5)]
    assert waits == [0.5, 1.0, 2.0, 4.0]


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    assert delay(100_000, cap=30.0, rng=random.Random(1)) <= 30.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_exponential_growth_within_jitter_bounds(attempt: int) -> None:
    rng = random.Random(7)
    ceiling = 2.0 ** (attempt - 1)
    for _ in range(200):
        wait = delay(attempt, base=1.0, cap=100.0, rng=rng)
        assert ceiling / 2 <= wait <= ceiling


def test_waits_grow_with_the_attempt() -> None:
    rng = random.Random(3)
    means = [sum(delay(a, rng=rng, cap=1000.0) for _ in range(100)) / 100 for a in range(1, 6)]
    assert means == sorted(means)
    assert means[-1] > 8 * means[0]


def test_jitter_spreads_workers_apart() -> None:
    rng = random.Random(11)
    waits = {delay(3, rng=rng) for _ in range(50)}
    assert len(waits) > 40


def test_same_seed_same_waits() -> None:
    first = [delay(a, rng=random.Random(42)) for a in range(1, 8)]
    second = [delay(a, rng=random.Random(42)) for a in range(1, 8)]
    assert first == second


def test_base_scales_the_wait() -> None:
    rng = random.Random(5)
    for _ in range(100):
        assert 0.25 <= delay(2, base=0.25, rng=rng) <= 0.5


@pytest.mark.parametrize("attempt", [6, 10, 50, 1000])
def test_cap(attempt: int) -> None:
    rng = random.Random(9)
    for _ in range(50):
        wait = delay(attempt, base=1.0, cap=30.0, rng=rng)
        assert 15.0 <= wait <= 30.0


def test_default_random_source_stays_in_bounds() -> None:
    for _ in range(50):
        assert 2.0 <= delay(3) <= 4.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        delay(attempt)
    with pytest.raises(ValueError, match="1-based"):
        delay(attempt, retry_after=1.0)
