"""api.rate_limit across workers and hosts: the buckets in Redis (realtime.broker redis://) or the database."""
from __future__ import annotations

import http.client
import uuid
from pathlib import Path

import pytest
import redis

from alyx.config import load_config
from alyx.db import Database
from alyx.ratelimit import RedisRateLimiter, SqlRateLimiter
from alyx.system_migrations import apply_system_migrations
from tests.conftest import write_project
from tests.harness import LiveServer

REDIS = "redis://127.0.0.1:6379/0"
SECRET = "ratelimit-test-secret-" + "x" * 32
SCHEMA = "collections: []\n"


def _sql_limiter(tmp_path: Path, url: str | None, limit: int, window: float) -> tuple[SqlRateLimiter, Database]:
    env = {"ALYX_DATABASE_URL": url} if url else {}
    db = Database(load_config(tmp_path, env=env))
    with db.connection():
        apply_system_migrations(db)  # system migration 4 makes the buckets' table
    return SqlRateLimiter(limit, window, db.execute, db.connection, db.write, postgres=not db.is_sqlite), db


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sql_buckets_burst_refill_and_are_shared(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    first, db1 = _sql_limiter(tmp_path, url, limit=3, window=60)  # a token every 20 s
    second, db2 = _sql_limiter(tmp_path, url, limit=3, window=60)  # another worker, same database
    key = uuid.uuid4().hex
    try:
        assert [first.hit(key, now=100.0), second.hit(key, now=100.0), first.hit(key, now=100.0)] == [0.0] * 3
        assert second.hit(key, now=100.0) == pytest.approx(20.0)
        assert first.hit(key, now=110.0) == pytest.approx(10.0)
        assert second.hit(key, now=120.0) == 0.0
        assert first.hit("other" + key, now=120.0) == 0.0
        assert first.hit(key, now=10_000.0) == 0.0  # a long idle time banks no more than the limit
        assert [second.hit(key, now=10_000.0) for _ in range(3)][-1] == pytest.approx(20.0)
    finally:
        db1.close()
        db2.close()


def test_redis_buckets_are_shared() -> None:
    client = redis.Redis.from_url(REDIS)
    limiters = [RedisRateLimiter(4, 600, client) for _ in range(2)]
    key = uuid.uuid4().hex
    waits = [limiters[i % 2].hit(key) for i in range(6)]
    assert waits[:4] == [0.0] * 4 and all(w > 100 for w in waits[4:]), waits


def _statuses(server: LiveServer, count: int) -> list[int]:
    """`count` GETs, every other one on a keep-alive connection held open all along and the rest each on
    a new connection. With --worker-connections 1 (see the test) the worker holding the kept connection
    accepts no other, so the new ones all go to the other worker: both workers answer, by construction,
    however slowly the second one boots."""
    held = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    statuses = []
    try:
        for i in range(count):
            conn = held if i % 2 == 0 else http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/api/health")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            if conn is not held:
                conn.close()
    finally:
        held.close()
    return statuses


@pytest.mark.parametrize("broker", [None, REDIS])
def test_the_api_limit_holds_across_workers(tmp_path: Path, broker: str | None) -> None:
    project = write_project(tmp_path / "project", SCHEMA)
    env = {"ALYX_API_RATE_LIMIT": "6", "ALYX_API_RATE_LIMIT_WINDOW": "600",
           "GUNICORN_CMD_ARGS": "--worker-connections 1"}  # a worker holding a connection takes no other
    if broker:
        env["ALYX_REALTIME_BROKER"] = broker
    server = LiveServer(project, workers=2, secret=SECRET, env=env)
    try:
        statuses = _statuses(server, 14)
        # wait_healthy took one token already; per-worker buckets would allow up to 12 of 14
        assert statuses.count(200) <= 6 and statuses[-1] == 429, statuses
        assert len(server.worker_pids()) == 2
    finally:
        server.stop()


def test_apps_sharing_a_redis_keep_their_own_buckets(tmp_path: Path) -> None:
    """A second app (another database) on the same Redis neither inherits nor spends the first one's bucket."""
    from alyx.services import api_limiter

    limiters = []
    for name in ("a", "b"):
        env = {"ALYX_API_RATE_LIMIT": "1", "ALYX_API_RATE_LIMIT_WINDOW": "600", "ALYX_REALTIME_BROKER": REDIS}
        config = load_config(write_project(tmp_path / name, SCHEMA), env=env)
        limiter = api_limiter(config, Database(config))
        assert isinstance(limiter, RedisRateLimiter)
        limiters.append(limiter)
    first, second = limiters
    assert first.hit("203.0.113.7") == 0 and first.hit("203.0.113.7") > 0  # a's bucket is spent
    assert second.hit("203.0.113.7") == 0  # b's is its own
