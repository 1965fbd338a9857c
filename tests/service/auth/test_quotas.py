"""Per-key quotas (service/auth/quotas.py): a token bucket per key with an exact Retry-After, a
cap on requests in flight, and nothing at all for a key without limits."""

from __future__ import annotations

import pytest

from service.auth.principals import Limits, Principal
from service.auth.quotas import Quotas
from service.errors import TooManyRequests


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_rate_is_a_bucket_with_a_burst_and_an_exact_retry_after():
    clock = Clock()
    q = Quotas(clock)
    p = Principal("alice", limits=Limits(rate_per_s=2.0, burst=3))
    for _ in range(3):  # the burst
        assert q.admit(p) is None
    with pytest.raises(TooManyRequests) as e:
        q.admit(p)
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
    assert "rate_per_s=2" in e.value.message and "burst=3" in e.value.message
    clock.now += 0.5  # one token back at 2 per second
    q.admit(p)
    with pytest.raises(TooManyRequests):
        q.admit(p)
    other = Principal("bob", limits=Limits(rate_per_s=2.0))
    q.admit(other)  # each key its own bucket


def test_a_slow_rate_says_how_long_to_wait():
    q = Quotas(Clock())
    p = Principal("slow", limits=Limits(rate_per_s=0.1))
    q.admit(p)
    with pytest.raises(TooManyRequests) as e:
        q.admit(p)
    assert e.value.headers["Retry-After"] == "10"


def test_requests_in_flight_are_capped_and_released():
    q = Quotas(Clock())
    p = Principal("alice", limits=Limits(max_concurrent=2))
    done = [q.admit(p), q.admit(p)]
    with pytest.raises(TooManyRequests, match="max_concurrent=2"):
        q.admit(p)
    done[0]()
    assert q.in_flight("alice") == 1
    q.admit(p)
    assert q.in_flight("alice") == 2


def test_a_key_without_limits_is_not_counted():
    q = Quotas(Clock())
    p = Principal("free")
    assert all(q.admit(p) is None for _ in range(10_000))
    assert q.in_flight("free") == 0 and not q._buckets
