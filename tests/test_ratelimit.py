"""alyx.ratelimit: a token bucket per key (bursts up to the limit, continuous refill), bounded memory."""
from __future__ import annotations

import threading

import pytest

from alyx.ratelimit import RateLimiter


def test_a_burst_up_to_the_limit_then_the_wait_until_the_next_token() -> None:
    limiter = RateLimiter(limit=3, window=60)  # one token every 20 s
    assert [limiter.hit("ip", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("ip", now=100.0) == pytest.approx(20.0)
    assert limiter.hit("ip", now=110.0) == pytest.approx(10.0)  # half a token back after 10 s
    assert limiter.hit("ip", now=120.0) == 0.0  # a whole one after 20 s
    assert limiter.hit("ip", now=120.0) == pytest.approx(20.0)


def test_keys_are_independent() -> None:
    limiter = RateLimiter(limit=1, window=10)
    assert limiter.hit("a", now=0.0) == 0.0
    assert limiter.hit("a", now=0.0) > 0
    assert limiter.hit("b", now=0.0) == 0.0


def test_refill_never_exceeds_the_limit() -> None:
    limiter = RateLimiter(limit=2, window=10)
    limiter.hit("k", now=0.0)
    # A long idle time does not bank more than `limit` tokens.
    assert [limiter.hit("k", now=1000.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(5.0)]


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert RateLimiter.retry_after(0.01) == 1
    assert RateLimiter.retry_after(1.0) == 1
    assert RateLimiter.retry_after(1.2) == 2


def test_memory_is_bounded_and_full_buckets_are_forgotten_first() -> None:
    limiter = RateLimiter(limit=2, window=10, max_keys=3)
    limiter.hit("old", now=0.0)
    limiter.hit("busy", now=9.0)
    limiter.hit("busy", now=9.0)
    limiter.hit("mid", now=9.0)
    # A fourth key at t=12: "old" has been full again since t=5 and is pruned; "busy" keeps its state.
    assert limiter.hit("new", now=12.0) == 0.0
    assert limiter.hit("busy", now=12.0) == pytest.approx(2.0)  # kept: empty at t=9, 0.6 of a token since
    assert limiter.hit("mid", now=12.0) == 0.0 and limiter.hit("mid", now=12.0) > 0  # kept: 1 + 0.6 tokens


def test_when_nothing_can_be_pruned_the_table_is_cleared_not_grown() -> None:
    limiter = RateLimiter(limit=1, window=100, max_keys=2)
    limiter.hit("a", now=0.0)
    limiter.hit("b", now=0.0)
    assert limiter.hit("a", now=1.0) > 0  # still remembered: its token is spent
    assert limiter.hit("c", now=1.0) == 0.0  # a third key: no bucket is full, so all are dropped
    assert limiter.hit("a", now=1.0) == 0.0  # forgotten: a fresh bucket


def test_concurrent_hits_never_hand_out_more_than_the_limit() -> None:
    limiter = RateLimiter(limit=50, window=3600)
    allowed = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            ok = limiter.hit("shared", now=0.0) == 0.0
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50 and len(allowed) == 160
