"""The client-side limits: a token bucket over every request, and the wait before retrying a shed one."""

from __future__ import annotations

import random

import pytest

from modelrollout.kube.throttle import DEFAULT_RETRY_AFTER_S, TokenBucket, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.wait_s() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait_s() == pytest.approx(0.1)  # the fourth waits for one token
    assert bucket.wait_s() == pytest.approx(0.2)  # and the fifth behind it
    clock.now = 10.0  # a quiet spell refills to the burst, not beyond
    assert [bucket.wait_s() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait_s() > 0


def test_a_sustained_rate_is_held() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=1, clock=clock)
    waits = [bucket.wait_s() for _ in range(1000)]
    assert waits[-1] == pytest.approx(999 / 100)  # 1000 requests take ~10 s at 100/s


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0)])
def test_a_bucket_that_allows_nothing_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=rate, burst=burst)


def test_retry_after_follows_the_server_doubles_and_is_capped() -> None:
    rng = random.Random(1)
    assert 3.0 <= retry_after_s("3", 1, ceiling_s=30, rng=rng) <= 3.3
    assert 6.0 <= retry_after_s("3", 2, ceiling_s=30, rng=rng) <= 6.6
    assert 30.0 <= retry_after_s("3", 9, ceiling_s=30, rng=rng) <= 33.0
    assert DEFAULT_RETRY_AFTER_S <= retry_after_s(None, 1, ceiling_s=30, rng=rng) <= 1.1 * DEFAULT_RETRY_AFTER_S
    assert DEFAULT_RETRY_AFTER_S <= retry_after_s("soon", 1, ceiling_s=30, rng=rng) <= 1.1 * DEFAULT_RETRY_AFTER_S
    assert retry_after_s("0", 1, ceiling_s=30, rng=rng) >= DEFAULT_RETRY_AFTER_S / 2  # never a tight loop
