"""The one RetryPolicy both cloud clients retry under: the backoff, Retry-After as its floor, and
when it gives up (a count of tries, a deadline, a shorter one for reads)."""

from __future__ import annotations

from substratus_cli.retry import RetryPolicy, retry_after_seconds


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(first_delay=0.5, max_delay=3.0)
    assert [policy.delay(n, None) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_a_floor_under_the_backoff() -> None:
    policy = RetryPolicy(first_delay=0.5, max_delay=8.0)
    assert policy.delay(1, 2.0) == 2.0  # never sooner than the server asks
    assert policy.delay(4, 1.0) == 4.0  # a short Retry-After does not stop the backing off


def test_it_gives_up_after_its_tries_or_past_its_deadline() -> None:
    counted = RetryPolicy(tries=3, deadline=10.0)
    assert counted.allows(2, waited=1.0, delay=1.0)
    assert not counted.allows(3, waited=1.0, delay=1.0)
    timed = RetryPolicy(deadline=10.0, read_deadline=2.0)
    assert timed.allows(100, waited=8.0, delay=2.0)
    assert not timed.allows(1, waited=8.0, delay=2.5)
    assert not timed.allows(1, waited=1.0, delay=1.5, read=True)
    assert RetryPolicy(deadline=10.0).allows(1, waited=8.0, delay=2.0, read=True)


def test_retry_after_values() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(2) == 2.0
    assert retry_after_seconds("-1") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_seconds(None) is None
