"""alyx.jobs and alyx.leases on real databases (SQLite file and PostgreSQL): claims, retries, dead letter, leases."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database, PreparedInsert
from alyx.errors import AlyxError
from alyx.jobs import INSERT_COLUMNS, JobQueue, backoff_seconds, job_row
from alyx.leases import Leases
from alyx.models import EventModels, build_event_models


@pytest.fixture
def event_db(tmp_path: Path, database_env: dict[str, str]) -> Iterator[tuple[Database, EventModels]]:
    config = Config(project_dir=tmp_path, database_url=database_env.get("ALYX_DATABASE_URL"))
    db = Database(config)
    models = build_event_models(db.peewee)
    with db.connection():
        db.peewee.create_tables(models.all, safe=True)
    yield db, models
    db.close()


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    assert backoff_seconds(1, 2.0, 100.0, rand=lambda: 1.0) == 2.0
    assert backoff_seconds(1, 2.0, 100.0, rand=lambda: 0.0) == 1.0
    assert backoff_seconds(3, 2.0, 100.0, rand=lambda: 1.0) == 8.0
    assert backoff_seconds(20, 2.0, 100.0, rand=lambda: 1.0) == 100.0
    delays = {backoff_seconds(4, 1.0, 3600.0) for _ in range(50)}
    assert len(delays) > 1 and all(4.0 <= d <= 8.0 for d in delays)


def test_claim_succeed_and_each_job_is_claimed_once(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job)
    ids = [queue.enqueue("function", "fn", "database", {"n": i}, 3) for i in range(20)]
    claimed: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine = claimed.setdefault(name, [])
        while True:
            jobs = queue.claim(name, 3, 30)
            if not jobs:
                return
            for job in jobs:
                mine.append(job.id)
                assert job.attempts == 1
                assert queue.succeed(job, name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = [i for ids_ in claimed.values() for i in ids_]
    assert sorted(everything) == sorted(ids)  # every job exactly once across the workers
    assert queue.counts() == {"done": 20}


def test_failures_back_off_then_dead_letter_then_admin_retry(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job, backoff_base=10.0, backoff_cap=100.0)
    job_id = queue.enqueue("function", "fn", "webhook", {"x": 1}, 3)
    now = utcnow()
    for attempt in (1, 2):
        (job,) = queue.claim("w", 1, 30, now=now)
        assert job.id == job_id and job.attempts == attempt and not job.final_attempt
        assert queue.fail(job, "w", {"code": "function_error", "message": "boom"}, now=now) == "pending"
        row = queue.get(job_id)
        delay = (dt.datetime.fromisoformat(row["run_at"][:-1]) - now).total_seconds()
        assert 10 * 2 ** (attempt - 1) / 2 <= delay <= 10 * 2 ** (attempt - 1)
        assert queue.claim("w", 1, 30, now=now) == []  # not due yet
        now = now + dt.timedelta(seconds=delay + 0.001)
    (job,) = queue.claim("w", 1, 30, now=now)
    assert job.final_attempt
    assert queue.fail(job, "w", {"code": "function_error", "message": "boom"}, execution_id="e3", now=now) == "dead"
    dead = queue.list({"status": "dead"})
    assert [d["id"] for d in dead] == [job_id] and dead[0]["attempts"] == 3
    assert dead[0]["last_error"]["code"] == "function_error" and dead[0]["last_execution_id"] == "e3"
    assert queue.claim("w", 1, 30, now=now + dt.timedelta(days=1)) == []
    retried = queue.retry(job_id)
    assert retried["status"] == "pending" and retried["max_attempts"] == 4
    (job,) = queue.claim("w", 1, 30)
    assert job.attempts == 4 and job.final_attempt
    assert queue.succeed(job, "w")
    with pytest.raises(Exception, match="only dead jobs"):
        queue.retry(job_id)


def test_a_dead_worker_attempt_is_reclaimed_and_counted(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job)
    job_id = queue.enqueue("function", "fn", "database", {}, 2)
    now = utcnow()
    (job,) = queue.claim("dies", 1, 5, now=now)
    assert queue.reclaim_stale(now=now + dt.timedelta(seconds=1)) == []  # still locked
    ((lost, status),) = queue.reclaim_stale(now=now + dt.timedelta(seconds=6))
    assert lost.id == job_id and status == "pending"
    assert not queue.succeed(job, "dies")  # the old holder can no longer finish it
    (again,) = queue.claim("w2", 1, 5, now=now + dt.timedelta(seconds=7))
    assert again.attempts == 2 and again.final_attempt
    ((_, status),) = queue.reclaim_stale(now=now + dt.timedelta(seconds=20))
    assert status == "dead" and queue.get(job_id)["last_error"]["code"] == "worker_lost"


def test_outbox_rows_roll_back_with_their_transaction(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job)
    with db.connection():
        with pytest.raises(RuntimeError), db.write():
            queue.insert([job_row("function", "fn", "database", {}, 1)])
            raise RuntimeError("the record write failed")
        with db.write():
            queue.insert([job_row("function", "fn", "database", {}, 1)])
    assert queue.counts() == {"pending": 1}


def test_purge_done(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job)
    queue.enqueue("function", "fn", "schedule", {}, 1)
    (job,) = queue.claim("w", 1, 30)
    queue.succeed(job, "w")
    assert queue.purge_done(utcnow() - dt.timedelta(hours=1)) == 0
    assert queue.purge_done(utcnow() + dt.timedelta(seconds=1)) == 1


def test_leases_one_holder_and_takeover_after_expiry(event_db) -> None:
    db, models = event_db
    leases = Leases(db, models.lease)
    now = utcnow()
    assert leases.acquire("scheduler", "a", 10, now=now)
    assert not leases.acquire("scheduler", "b", 10, now=now + dt.timedelta(seconds=5))
    assert leases.acquire("scheduler", "a", 10, now=now + dt.timedelta(seconds=5))  # renewal
    assert not leases.acquire("scheduler", "b", 10, now=now + dt.timedelta(seconds=14))
    assert leases.acquire("scheduler", "b", 10, now=now + dt.timedelta(seconds=16))  # a died: takeover
    assert not leases.acquire("scheduler", "a", 10, now=now + dt.timedelta(seconds=17))
    assert leases.holder("scheduler", now=now + dt.timedelta(seconds=17)) == "b"
    leases.release("scheduler", "b")
    assert leases.holder("scheduler") is None
    assert leases.acquire("scheduler", "a", 10)


def test_leases_under_concurrent_contenders(event_db) -> None:
    db, models = event_db
    leases = Leases(db, models.lease)
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(name: str) -> None:
        barrier.wait()
        if leases.acquire("scheduler", name, 30):
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1


def test_outbox_payloads_keep_their_json_and_times_print_like_records(event_db) -> None:
    db, models = event_db
    queue = JobQueue(db, models.job)
    payload = {"input": {"document": {"id": "abc", "tags": ["x", "ü"], "n": 1.5, "none": None}}}
    with db.connection(), db.write():
        queue.insert([job_row("function", "fn", "database", payload, 2),
                      job_row("outgoing", "hook", "database", None, 1)])
    jobs = {j["kind"]: j for j in queue.list({})}
    assert jobs["function"]["payload"] == payload and jobs["outgoing"]["payload"] is None
    created = jobs["function"]["created_at"]
    assert created.endswith("Z") and len(created) == len("2026-12-01T20:53:37.123Z")  # clock.iso


def test_prepared_insert_names_unknown_columns(event_db) -> None:
    db, models = event_db
    with pytest.raises(ValueError, match="no field"):
        PreparedInsert(db.peewee, models.job, ["kind", "colour"])
    prepared = PreparedInsert(db.peewee, models.lease, ["name", "holder", "expires_at", "acquired_at"])
    assert prepared.columns == ("name", "holder", "expires_at", "acquired_at") and not prepared.json_columns
    with pytest.raises(ValueError, match="missing acquired_at"):  # a column with a default must be named
        PreparedInsert(db.peewee, models.lease, ["name", "holder", "expires_at"])
    assert PreparedInsert(db.peewee, models.job, INSERT_COLUMNS).json_columns == {"payload"}


def test_a_job_id_past_64_bits_is_not_found(event_db) -> None:
    """Regression (found by the admin fuzz pass): /api/jobs/152225451247266103296 was a 500 (OverflowError)."""
    db, models = event_db
    queue = JobQueue(db, models.job)
    for job_id in (2**63, 152225451247266103296, 0):
        for call in (queue.get, queue.retry):
            with pytest.raises(AlyxError) as raised:
                call(job_id)
            assert raised.value.status == 404, (call, job_id)
