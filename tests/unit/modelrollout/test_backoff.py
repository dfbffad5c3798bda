from datetime import UTC, datetime, timedelta

from modelrollout.backoff import Backoff

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEY = ("ns", "md")


def test_delays_double_up_to_the_ceiling() -> None:
    backoff = Backoff(initial_s=2, max_s=30)
    assert [backoff.delay_s(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert backoff.delay_s(10_000) == 30, "no overflow after very many refusals"


def test_a_refused_generation_waits_for_its_retry() -> None:
    backoff = Backoff(initial_s=2, max_s=300)
    assert not backoff.waiting(KEY, 1, T0), "never refused: pass at once"
    first = backoff.refused(KEY, 1, T0)
    assert (first.failures, first.retry_at) == (1, T0 + timedelta(seconds=2))
    assert backoff.waiting(KEY, 1, T0 + timedelta(seconds=1.9))
    assert not backoff.waiting(KEY, 1, T0 + timedelta(seconds=2))
    second = backoff.refused(KEY, 1, T0 + timedelta(seconds=2))
    assert (second.failures, second.retry_at) == (2, T0 + timedelta(seconds=6))
    assert not backoff.waiting(("ns", "other"), 1, T0), "per ModelDeployment"


def test_a_new_generation_retries_at_once_from_the_first_delay() -> None:
    backoff = Backoff(initial_s=2, max_s=300)
    for n in range(4):
        backoff.refused(KEY, 1, T0 + timedelta(seconds=n))
    assert not backoff.waiting(KEY, 2, T0), "the user's fix is tried at once"
    assert backoff.refused(KEY, 2, T0).failures == 1


def test_clearing_starts_over() -> None:
    backoff = Backoff(initial_s=2, max_s=300)
    backoff.refused(KEY, 1, T0)
    backoff.refused(KEY, 1, T0)
    backoff.clear(KEY)
    assert not backoff.waiting(KEY, 1, T0)
    assert backoff.refused(KEY, 1, T0).failures == 1
