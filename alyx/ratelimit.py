"""An in-process token-bucket rate limiter keyed by any string (the API uses the client's IP).

Knows nothing of Flask. In-process means per worker: with N gunicorn workers a client can get up
to N times the configured rate (docs/auth.md). Login backoff, which must hold across workers, is
kept in the database instead (alyx/auth.py LoginGuard).
"""
from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """Allows ``limit`` requests per ``window`` seconds per key, refilled continuously (bursts up to ``limit``)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.rate = limit / window
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_keys and key not in self._buckets:
                    self._prune(now)
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket is full again (they carry no state worth keeping)."""
        full_after = self.limit / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    @staticmethod
    def retry_after(wait: float) -> int:
        return max(1, math.ceil(wait))
