"""The token bucket and the time budget, on a fake clock."""

from __future__ import annotations

import pytest

from carnet.domain.errors import DeadlineExceeded
from carnet.services import deadline, rate_limit
from carnet.services.rate_limit import RateLimiter
from carnet.testing import FixedSeconds


def test_a_bucket_allows_its_burst_then_asks_to_wait() -> None:
    """Burst 3 at 60/min: three requests pass, the fourth waits 1 s, and one second refills one token."""
    clock = FixedSeconds()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, 1]
    clock.now = 1.0
    assert limiter.take("a") == 0
    assert limiter.take("a") == 1


def test_retry_after_is_the_time_to_the_next_token() -> None:
    """At 6 per minute an empty bucket asks for 10 s; keys are independent."""
    clock = FixedSeconds()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)
    assert limiter.take("a") == 0
    assert limiter.take("a") == 10
    assert limiter.take("b") == 0


def test_a_rate_of_zero_turns_the_limiter_off() -> None:
    """CARNET_*_RATE_PER_MINUTE=0 means no limit."""
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert {limiter.take("a") for _ in range(1000)} == {0}


def test_the_table_of_buckets_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of new keys cannot grow the table past MAX_KEYS."""
    monkeypatch.setattr(rate_limit, "MAX_KEYS", 100)
    clock = FixedSeconds()
    limiter = RateLimiter(per_minute=1, burst=5, clock=clock)
    for number in range(1000):
        limiter.take(f"key-{number}")
    assert len(limiter._buckets) <= 100


def test_the_time_budget_stops_work_past_it() -> None:
    """check() passes within the budget, raises DeadlineExceeded after it, and does nothing outside one."""
    clock = FixedSeconds()
    deadline.check()
    with deadline.within(2.0, clock):
        clock.now = 1.9
        deadline.check()
        clock.now = 2.1
        with pytest.raises(DeadlineExceeded, match="CARNET_REQUEST_SECONDS"):
            deadline.check()
    deadline.check()
