"""Token-bucket rate limiters keyed by any string (the API uses the client's IP): in-process, Redis, SQL.

Knows nothing of Flask or of Alyx's database layer. RateLimiter is per process (tests, one worker).
RedisRateLimiter and SqlRateLimiter keep the buckets where every worker of every host sees them, so
`api.rate_limit` holds across a cluster: the API uses Redis where `realtime.broker` is redis://, the
database otherwise (blueprints/auth.py). Same semantics everywhere: bursts up to `limit`, refilled
continuously at limit/window per second; `hit` returns 0.0 when allowed, else the seconds to wait.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any


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


REDIS_BUCKET = """
local limit, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = math.min(limit, (tonumber(b[1]) or limit) + (now - (tonumber(b[2]) or now)) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(limit / rate) + 1)
return tostring(wait)
"""


class RedisRateLimiter:
    """The buckets in Redis: one atomic script per hit (Redis's clock, so hosts' clocks do not matter)."""

    def __init__(self, limit: int, window: float, client: Any, prefix: str = "alyx:ratelimit:") -> None:
        self.limit = limit
        self.rate = limit / window
        self.prefix = prefix
        self._script = client.register_script(REDIS_BUCKET)

    def hit(self, key: str) -> float:
        return float(self._script(keys=[self.prefix + key], args=[self.limit, self.rate]))


TABLE = "alyx_rate_limits"
TABLE_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (key VARCHAR(255) PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL, "
             "updated DOUBLE PRECISION NOT NULL, ok INTEGER NOT NULL DEFAULT 1)")


class SqlRateLimiter:
    """The buckets in a table of the app's database (SQLite or PostgreSQL): one upsert per hit.

    `execute(sql, params)` runs raw SQL and returns a cursor; `connection()` borrows a connection
    (Alyx's Database.connection: the WebSocket endpoint holds none); `write()` opens a write
    transaction (Database.write, which serialises SQLite writers in the process). The table (TABLE_DDL,
    made by system migration 4) holds one row per recently seen key; rows idle for a window are deleted
    now and then.
    """

    PRUNE_EVERY = 1000

    def __init__(self, limit: int, window: float, execute: Callable[..., Any],
                 connection: Callable[[], contextlib.AbstractContextManager[Any]],
                 write: Callable[[], contextlib.AbstractContextManager[Any]], postgres: bool) -> None:
        self.limit = limit
        self.window = window
        self.rate = limit / window
        self.execute = execute
        self.write = write
        self.connection = connection
        least = "LEAST" if postgres else "MIN"
        refilled = f"{least}(?, {TABLE}.tokens + (? - {TABLE}.updated) * ?)"
        self.sql = (f"INSERT INTO {TABLE} (key, tokens, updated, ok) VALUES (?, ?, ?, 1) "
                    f"ON CONFLICT (key) DO UPDATE SET "
                    f"tokens = CASE WHEN {refilled} >= 1 THEN {refilled} - 1 ELSE {refilled} END, "
                    f"ok = CASE WHEN {refilled} >= 1 THEN 1 ELSE 0 END, updated = ? RETURNING tokens, ok")
        if postgres:
            self.sql = self.sql.replace("?", "%s")
        self._hits = 0

    def hit(self, key: str, now: float | None = None) -> float:
        now = time.time() if now is None else now
        refill = (self.limit, now, self.rate)
        params = (key[:255], self.limit - 1.0, now, *refill, *refill, *refill, *refill, now)
        with self.connection():
            with self.write():
                tokens, ok = self.execute(self.sql, params).fetchone()
                self._hits += 1
                if self._hits % self.PRUNE_EVERY == 0:
                    self.execute(f"DELETE FROM {TABLE} WHERE updated < {'%s' if '%s' in self.sql else '?'}",
                                 (now - self.window,))
        return 0.0 if ok else (1.0 - float(tokens)) / self.rate
