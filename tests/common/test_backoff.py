"""The one back-off policy: 1, 2, 4 … s or the service's Retry-After, at least 1 s, ± 20 % jitter, never over 30 s."""

import random

from hypothesis import given
from hypothesis import strategies as st

from common.backoff import MAX_BACKOFF_SECONDS, backoff_seconds


def test_it_doubles_from_one_second_and_stops_at_thirty():
    middle = random.Random(7)
    waits = [backoff_seconds(attempt, rng=middle) for attempt in range(8)]
    for attempt, wait in enumerate(waits):
        base = min(2**attempt, 30)
        assert 0.8 * base <= wait <= min(1.2 * base, 30), (attempt, wait)
    assert MAX_BACKOFF_SECONDS == 30


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    retry_after=st.none() | st.floats(min_value=0, max_value=100_000, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_it_never_waits_less_than_0_8_seconds_or_more_than_30(attempt, retry_after, seed):
    wait = backoff_seconds(attempt, retry_after=retry_after, rng=random.Random(seed))
    assert 0.8 <= wait <= 30


def test_it_waits_what_the_service_asked_for_give_or_take_the_jitter():
    rng = random.Random(3)
    assert all(5.6 <= backoff_seconds(0, retry_after=7, rng=rng) <= 8.4 for _ in range(100))
    assert all(backoff_seconds(9, retry_after=2, rng=rng) <= 2.4 for _ in range(100))  # not 2^9: the service knows
    assert all(0.8 <= backoff_seconds(0, retry_after=0.1, rng=rng) <= 1.2 for _ in range(100))  # at least ~1 s


def test_a_backlog_held_up_together_is_spread_over_plus_minus_twenty_percent():
    rng = random.Random(11)
    waits = [backoff_seconds(3, rng=rng) for _ in range(500)]  # 8 s ± 20 %
    assert min(waits) < 6.6 and max(waits) > 9.4
    assert len({round(wait, 3) for wait in waits}) > 400


def test_the_jitter_never_pushes_the_longest_wait_over_thirty_seconds():
    top = random.Random()
    top.uniform = lambda low, high: high  # type: ignore[method-assign]  # the jitter at its ceiling
    assert backoff_seconds(5, rng=top) == 30  # 32 s capped to 30 s, then + 20 % capped again
    assert backoff_seconds(2, rng=top) == 4 * 1.2
