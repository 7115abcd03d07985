"""The durable job queue: async hooks, webhook deliveries, schedule runs and outgoing webhooks.

No Flask and no function knowledge: a job is a row (kind, target, trigger, payload) that moves
pending → running → done, or back to pending with an exponential, jittered delay after a failed
attempt, or to dead (the dead letter) once ``max_attempts`` are spent. Claims are conditional
UPDATEs, so any number of workers on any number of hosts can pull from the same table and each
attempt is made by one of them. A worker that dies mid-attempt leaves a ``running`` row whose lock
lapses; ``reclaim_stale`` counts that attempt as failed and hands the job back.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from alyx.clock import iso_or_value, utcnow
from alyx.db import Database, PreparedInsert, dict_row, dict_rows, row_count, tuple_rows
from alyx.errors import AlyxError, not_found
from alyx.models import Job as JobModel
from alyx.query import filtered_listing

STATUSES = ("pending", "running", "done", "dead")
MAX_JOB_ID = 2**63 - 1  # ids are 64-bit: a larger one names no job (and cannot even be bound in SQL)
INSERT_COLUMNS = ("kind", "target", "trigger_type", "payload", "status", "attempts", "max_attempts", "run_at",
                  "created_at", "updated_at")


def backoff_seconds(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before attempt ``attempt + 1``: base·2^(attempt-1), capped, with "equal jitter" (½ to 1×)."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return float(ceiling / 2 + ceiling / 2 * rand())


@dataclass(frozen=True)
class Job:
    """A claimed job, as a runner sees it."""

    id: int
    kind: str
    target: str
    trigger_type: str
    payload: Any
    attempts: int  # including the one now claimed
    max_attempts: int
    created_at: dt.datetime

    @property
    def final_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


def job_row(kind: str, target: str, trigger: str, payload: Any, max_attempts: int,
            run_at: dt.datetime | None = None) -> dict[str, Any]:
    """The row of a new pending job (for ``JobQueue.insert`` inside a caller's transaction)."""
    now = utcnow()
    return {"kind": kind, "target": target, "trigger_type": trigger, "payload": payload, "status": "pending",
            "attempts": 0, "max_attempts": max(1, int(max_attempts)), "run_at": run_at or now, "created_at": now,
            "updated_at": now}


class JobQueue:
    """Enqueue, claim, finish, retry and dead-letter jobs in one table."""

    def __init__(self, db: Database, model: type[JobModel], backoff_base: float = 1.0,
                 backoff_cap: float = 3600.0) -> None:
        self.db = db
        self.model = model
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._insert = PreparedInsert(db.peewee, model, INSERT_COLUMNS)

    # -- enqueue -----------------------------------------------------------------------------------
    def insert(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert job rows in the caller's (already open) write transaction: the outbox.

        Prepared once (alyx.db.PreparedInsert): this runs inside every hooked record write, and
        building the statement with peewee's query builder cost more than the insert itself.
        """
        self._insert.run_many(rows)

    def enqueue(self, kind: str, target: str, trigger: str, payload: Any, max_attempts: int,
                run_at: dt.datetime | None = None) -> int:
        """Insert one job in its own transaction; returns its id."""
        with self.db.connection(), self.db.write():
            return int(self.model.insert(job_row(kind, target, trigger, payload, max_attempts, run_at)).execute())

    # -- claiming ----------------------------------------------------------------------------------
    def next_due(self) -> dt.datetime | None:
        """When the earliest pending job is due (None: nothing pending); lets a runner sleep until then."""
        m = self.model
        with self.db.connection():
            row = m.select(peewee.fn.MIN(m.run_at).alias("due")).where(m.status == "pending").dicts().first()
        return row["due"] if row else None

    def claim(self, worker: str, limit: int, lock_seconds: float, now: dt.datetime | None = None) -> list[Job]:
        """Take up to ``limit`` due pending jobs for ``worker``; each attempt is counted as it is claimed."""
        now = now or utcnow()
        m = self.model
        with self.db.connection():
            candidates = tuple_rows(m.select(m.id).where((m.status == "pending") & (m.run_at <= now))
                                    .order_by(m.run_at, m.id).limit(limit * 2))
            claimed: list[Job] = []
            for (job_id,) in candidates:
                if len(claimed) >= limit:
                    break
                with self.db.write():
                    won = (m.update(status="running", locked_by=worker,
                                    locked_until=now + dt.timedelta(seconds=lock_seconds),
                                    attempts=m.attempts + 1, updated_at=now)
                           .where((m.id == job_id) & (m.status == "pending")).execute())
                    if won:
                        row = dict_rows(m.select().where(m.id == job_id))[0]
                if won:
                    claimed.append(Job(row["id"], row["kind"], row["target"], row["trigger_type"], row["payload"],
                                       row["attempts"], row["max_attempts"], row["created_at"]))
        return claimed

    def renew(self, worker: str, lock_seconds: float) -> int:
        """Heartbeat: push back the locks of every job ``worker`` is running (a live worker keeps its jobs)."""
        m = self.model
        until = utcnow() + dt.timedelta(seconds=lock_seconds)
        with self.db.connection(), self.db.write():
            return row_count(m.update(locked_until=until).where((m.locked_by == worker) & (m.status == "running")))

    # -- finishing ---------------------------------------------------------------------------------
    def succeed(self, job: Job, worker: str, execution_id: str | None = None) -> bool:
        """Mark done; False when the lock was lost meanwhile (another worker took the job over)."""
        m = self.model
        with self.db.connection(), self.db.write():
            return bool(m.update(status="done", locked_by=None, locked_until=None, last_error=None,
                                 last_execution_id=execution_id, updated_at=utcnow())
                        .where((m.id == job.id) & (m.locked_by == worker) & (m.status == "running")).execute())

    def fail(self, job: Job, worker: str, error: Mapping[str, Any] | None, execution_id: str | None = None,
             now: dt.datetime | None = None) -> str:
        """After a failed attempt: back to pending with a backoff, or dead when attempts are spent.

        Returns the new status ("pending" or "dead"), or "lost" when another worker holds the job now.
        Call it inside ``db.write()`` together with whatever records the attempt, or on its own.
        """
        now = now or utcnow()
        m = self.model
        values: dict[str, Any] = {"locked_by": None, "locked_until": None, "updated_at": now,
                                  "last_error": dict(error) if error else None, "last_execution_id": execution_id}
        if job.final_attempt:
            values["status"] = "dead"
        else:
            values["status"] = "pending"
            values["run_at"] = now + dt.timedelta(seconds=backoff_seconds(job.attempts, self.backoff_base,
                                                                          self.backoff_cap))
        with self.db.connection(), self.db.write():
            changed = m.update(values).where((m.id == job.id) & (m.locked_by == worker)
                                             & (m.status == "running")).execute()
        return values["status"] if changed else "lost"

    def reclaim_stale(self, now: dt.datetime | None = None) -> list[tuple[Job, str]]:
        """Running jobs whose lock lapsed (their worker died): the attempt failed; retry or dead-letter.

        Returns each job with its new status, so the caller can log the lost attempt.
        """
        now = now or utcnow()
        m = self.model
        with self.db.connection():
            stale = dict_rows(m.select().where((m.status == "running") & (m.locked_until < now)))
            out: list[tuple[Job, str]] = []
            for row in stale:
                job = Job(row["id"], row["kind"], row["target"], row["trigger_type"], row["payload"], row["attempts"],
                          row["max_attempts"], row["created_at"])
                error = {"code": "worker_lost", "message": f"The worker {row['locked_by']} stopped during "
                                                           f"attempt {row['attempts']} (lock expired).",
                         "details": {}}
                status = "dead" if job.final_attempt else "pending"
                with self.db.write():
                    changed = (m.update(status=status, locked_by=None, locked_until=None, last_error=error,
                                        run_at=now, updated_at=now)
                               .where((m.id == job.id) & (m.status == "running") & (m.locked_until < now))
                               .execute())
                if changed:
                    out.append((job, status))
        return out

    # -- admin ---------------------------------------------------------------------------------
    def retry(self, job_id: int, extra_attempts: int = 1) -> dict[str, Any]:
        """An admin retries a dead job: pending now, with ``extra_attempts`` more attempts allowed."""
        m = self.model
        self._check_id(job_id)
        with self.db.connection():
            with self.db.write():
                row = dict_row(m.select().where(m.id == job_id))
                if row is None:
                    raise not_found(f"No job {job_id}.")
                if row["status"] != "dead":
                    raise AlyxError("conflict", f"Job {job_id} is {row['status']}; only dead jobs can be retried.",
                                    409)
                m.update(status="pending", run_at=utcnow(), updated_at=utcnow(),
                         max_attempts=row["attempts"] + max(1, extra_attempts)).where(m.id == job_id).execute()
            return self.get(job_id)

    def get(self, job_id: int) -> dict[str, Any]:
        m = self.model
        self._check_id(job_id)
        with self.db.connection():
            row = dict_row(m.select().where(m.id == job_id))
        if row is None:
            raise not_found(f"No job {job_id}.")
        return shape(row)

    @staticmethod
    def _check_id(job_id: int) -> None:
        if not 1 <= job_id <= MAX_JOB_ID:
            raise not_found(f"No job {job_id}.")

    def list(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Newest first; filters: status, trigger_type, target; limit (default 50, max 500)."""
        m = self.model
        select, limit = filtered_listing(m, query, ("status", "trigger_type", "target"))
        with self.db.connection():
            return [shape(r) for r in dict_rows(select.order_by(m.id.desc()).limit(limit))]

    def counts(self) -> dict[str, int]:
        m = self.model
        with self.db.connection():
            return {status: n for status, n in tuple_rows(m.select(m.status, peewee.fn.COUNT(m.id)).group_by(m.status))}

    def purge_done(self, older_than: dt.datetime) -> int:
        """Delete finished jobs last touched before ``older_than`` (their attempts stay in the execution log)."""
        m = self.model
        with self.db.connection(), self.db.write():
            return row_count(m.delete().where((m.status == "done") & (m.updated_at < older_than)))


def shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job row as JSON (GET /api/jobs)."""
    return {k: iso_or_value(v) for k, v in row.items()}
