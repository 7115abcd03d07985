"""The background loop of a worker: run due jobs, and (in exactly one process) turn schedules into jobs.

Every worker runs jobs: claims are conditional UPDATEs, so workers share the queue safely. Only
the holder of the ``scheduler`` lease evaluates schedules; it renews the lease on every tick, and
when it dies another worker takes the lease over once it lapses. Even then a due time cannot be
queued twice: the schedule row's ``next_run_at`` is advanced with a compare-and-set in the same
transaction that inserts the job.

The loop is an ``alyx.background.Loop``: a greenlet under gunicorn's gevent worker, a real thread
under ``flask run``; it is started per worker after fork (by the app factory), never in gunicorn's
master. Each claimed job runs in its own ``spawn``-ed task.

Why not the ``schedule`` library for intervals: its jobs keep their next run in memory, counted
from when the process registered them, so every restart (and every worker) would restart the
count; it cannot resume from a persisted next-run time, nor take part in a database lease. The
interval arithmetic it would provide is one addition here (alyx/schedules.py), persisted.

This module knows the hook index only through the small ``HookSource`` protocol below (the
events service implements it), so it imports nothing of alyx/events.py.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from alyx.background import Loop, spawn
from alyx.clock import iso, iso_or_value, utcnow
from alyx.config import Config
from alyx.db import Database, dict_rows, tuple_rows
from alyx.errors import AlyxError
from alyx.jobs import Job, JobQueue, job_row
from alyx.leases import Leases
from alyx.models import Schedule
from alyx.schedules import ScheduleSpec, plan_runs

log = logging.getLogger("alyx.scheduler")

UTC = dt.timezone.utc
LEASE_NAME = "scheduler"
ON_TIME_GRACE = dt.timedelta(seconds=30)  # a due time older than this was missed (the server was down)
SCHEDULER_TICK_SECONDS = 1.0
RECLAIM_SECONDS = 5.0
PURGE_SECONDS = 600.0


class ScheduleIndex(Protocol):
    """What the scheduler reads of the hook index: every schedule, and the functions whose manifest is broken."""

    @property
    def schedules(self) -> Sequence[ScheduleSpec]: ...

    @property
    def errors(self) -> Mapping[str, str]: ...


class FunctionSchedules(Protocol):
    """The schedules of one function."""

    @property
    def schedules(self) -> Sequence[ScheduleSpec]: ...


class HookSource(Protocol):
    """Where schedules come from (the events service): the index, one function's hooks, its retries."""

    def refresh(self, force: bool = False) -> ScheduleIndex: ...

    def hooks(self, name: str) -> FunctionSchedules: ...

    def retries_of(self, name: str) -> int: ...


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


@dataclass(eq=False)
class Scheduler:
    """Schedules of every function: persisted next/last runs, queued as jobs by the lease holder."""

    db: Database
    model: type[Schedule]
    jobs: JobQueue
    leases: Leases
    hooks: HookSource
    worker_id: str
    _: KW_ONLY
    lease_seconds: float
    catch_up: str  # the default (alyx.yaml schedules.catch_up) for schedules that name none
    notify: Callable[[], None]  # runs the job runner now (started if this process runs jobs)
    leader: bool = field(default=False, init=False)

    def tick(self, now: dt.datetime | None = None) -> int:
        """Take (or renew) the lease and queue every due run; returns how many jobs were queued."""
        index = self.hooks.refresh()
        specs = [s for s in index.schedules if s.enabled]
        if not specs and not self.leader:
            return 0
        now_aware = (now or utcnow()).replace(tzinfo=UTC)
        if not self.leases.acquire(LEASE_NAME, self.worker_id, self.lease_seconds, now=_naive(now_aware)):
            if self.leader:
                log.info("%s no longer runs schedules", self.worker_id)
            self.leader = False
            return 0
        if not self.leader:
            log.info("%s runs the schedules (lease %r)", self.worker_id, LEASE_NAME)
        self.leader = True
        queued = 0
        db, m = self.db, self.model
        with db.connection():
            rows = {r["key"]: r for r in dict_rows(m.select())}
            for spec in specs:
                row = rows.get(spec.key)
                if row is None or row["fingerprint"] != spec.fingerprint:
                    following = _naive(spec.next_after(now_aware))
                    with db.write():
                        if row is None:
                            m.insert(key=spec.key, function=spec.function, name=spec.name,
                                     fingerprint=spec.fingerprint, next_run_at=following,
                                     updated_at=_naive(now_aware)).on_conflict_ignore().execute()
                        else:
                            m.update(fingerprint=spec.fingerprint, next_run_at=following,
                                     updated_at=_naive(now_aware)).where(m.key == spec.key).execute()
                    continue
                queued += self._run_due(spec, row, now_aware)
            gone = set(rows) - {s.key for s in index.schedules}
            gone = {key for key in gone if rows[key]["function"] not in index.errors}
            if gone:
                with db.write():
                    m.delete().where(m.key.in_(sorted(gone))).execute()
        if queued:
            self.notify()
        return queued

    def _run_due(self, spec: ScheduleSpec, row: dict[str, Any], now: dt.datetime) -> int:
        stored_next = _aware(row["next_run_at"])
        catch_up = spec.catch_up or self.catch_up
        runs, following = plan_runs(spec, stored_next, now, catch_up, ON_TIME_GRACE)
        if not runs and following == stored_next:
            return 0
        m = self.model
        retries = self.hooks.retries_of(spec.function)
        with self.db.write():
            advanced = (m.update(next_run_at=_naive(following), updated_at=_naive(now),
                                 **({"last_run_at": _naive(runs[-1])} if runs else {}))
                        .where((m.key == spec.key) & (m.next_run_at == row["next_run_at"])).execute())
            if not advanced:  # someone else advanced it first (a lease handover race): they queue it
                return 0
            last_job = None
            for scheduled_for in runs:
                payload = {"input": spec.input, "schedule": spec.key,
                           "scheduled_for": iso_or_value(_naive(scheduled_for))}
                last_job = self.jobs.model.insert(job_row("function", spec.function, "schedule", payload,
                                                          1 + retries)).execute()
            if last_job is not None:
                m.update(last_job_id=last_job).where(m.key == spec.key).execute()
        if runs and len(runs) > 1:
            log.info("schedule %s: %d missed runs queued (catch_up: %s)", spec.key, len(runs), catch_up)
        return len(runs)

    def run_now(self, function: str, name: str) -> dict[str, Any]:
        """An admin runs a schedule now (its next run time stays as it was)."""
        spec = next((s for s in self.hooks.hooks(function).schedules if s.name == name), None)
        if spec is None:
            raise AlyxError("not_found", f"Function {function!r} has no schedule named {name!r}.", 404)
        payload = {"input": spec.input, "schedule": spec.key, "scheduled_for": iso(utcnow()), "manual": True}
        job_id = self.jobs.enqueue("function", function, "schedule", payload, 1 + self.hooks.retries_of(function))
        self.notify()
        return {"job_id": job_id, "schedule": spec.key}

    def list(self) -> dict[str, Any]:
        """Every schedule with its persisted last and next run, and the status of its last job."""
        index = self.hooks.refresh(force=True)
        m = self.model
        with self.db.connection():
            rows = {r["key"]: r for r in dict_rows(m.select())}
            job_ids = [r["last_job_id"] for r in rows.values() if r["last_job_id"] is not None]
            jm = self.jobs.model
            statuses = {j: s for j, s in tuple_rows(jm.select(jm.id, jm.status).where(jm.id.in_(job_ids)))} \
                if job_ids else {}
        items = []
        for spec in index.schedules:
            row: dict[str, Any] = rows.get(spec.key) or {}
            fresh = row.get("fingerprint") == spec.fingerprint
            items.append({
                "function": spec.function, "name": spec.name, "key": spec.key, "type": spec.type,
                "expression": spec.expression, "timezone": spec.timezone, "enabled": spec.enabled,
                "catch_up": spec.catch_up or self.catch_up, "input": spec.input,
                "next_run_at": iso_or_value(row.get("next_run_at")) if fresh else None,
                "last_run_at": iso_or_value(row.get("last_run_at")),
                "last_job_id": row.get("last_job_id"), "last_status": statuses.get(row.get("last_job_id")),
            })
        holder = self.leases.holder(LEASE_NAME)
        return {"items": items, "errors": [{"function": k, "message": v} for k, v in sorted(index.errors.items())],
                "leader": holder}

    def step_down(self) -> None:
        """Give the lease up (a clean shutdown) so another worker need not wait for it to lapse."""
        if not self.leader:
            return
        try:
            self.leases.release(LEASE_NAME, self.worker_id)
        except Exception:  # noqa: BLE001 - the database may be gone already; the lease then lapses
            pass


@dataclass(frozen=True)
class JobLoopSettings:
    """How a worker runs jobs (alyx.yaml events.*)."""

    concurrency: int
    lock_seconds: float
    poll_seconds: float
    job_retention_seconds: float

    @classmethod
    def of(cls, config: Config) -> JobLoopSettings:
        lock = float(max(config.events_lock_seconds, 1))
        return cls(config.events_concurrency, lock, min(max(config.events_poll_ms, 10) / 1000, lock / 3),
                   float(config.events_job_retention_seconds))


class JobLoop:
    """One background loop per worker process: scheduler ticks, stale-job reclaim, purges, job runs."""

    def __init__(self, jobs: JobQueue, scheduler: Scheduler, settings: JobLoopSettings, *,
                 run_job: Callable[[Job], object], reclaim_stale: Callable[[], object]) -> None:
        self.jobs = jobs
        self.scheduler = scheduler
        self.settings = settings
        self.worker_id = scheduler.worker_id
        self.run_job = run_job
        self.reclaim_stale = reclaim_stale
        self.wanted = False  # set by the events service when this process runs jobs
        self.active = 0
        self._lock = threading.Lock()
        self._next_tick = self._next_reclaim = self._next_renew = 0.0
        self._next_purge = time.monotonic() + 60
        self._loop = Loop("alyx-events-loop", self._step, backoff=settings.poll_seconds,
                          max_backoff=max(settings.poll_seconds, RECLAIM_SECONDS))

    def ensure_started(self) -> None:
        """Start the loop if this process runs jobs and it is not running (never again once stopped)."""
        if self.wanted:
            self._loop.start()

    def wake(self) -> None:
        """Cut the current wait short: there is work (a job queued, a job finished)."""
        self._loop.wake()

    def kick(self) -> None:
        """``ensure_started`` then ``wake``: what a producer of jobs calls."""
        self.ensure_started()
        self.wake()

    def stop(self) -> None:
        self.wanted = False
        self._loop.stop()
        self.scheduler.step_down()

    def _step(self) -> float:
        """One round; returns how long to wait (0: every slot was filled, claim again at once)."""
        now = time.monotonic()
        if now >= self._next_tick:
            self.scheduler.tick()
            self._next_tick = now + SCHEDULER_TICK_SECONDS
        if now >= self._next_reclaim:
            self.reclaim_stale()
            self._next_reclaim = now + RECLAIM_SECONDS
        if now >= self._next_purge and self.scheduler.leader:
            self.jobs.purge_done(utcnow() - dt.timedelta(seconds=self.settings.job_retention_seconds))
            self._next_purge = now + PURGE_SECONDS
        if self.active and now >= self._next_renew:
            self.jobs.renew(self.worker_id, self.settings.lock_seconds)
            self._next_renew = now + self.settings.lock_seconds / 3
        return 0.0 if self._claim_and_start() else self.settings.poll_seconds

    def _claim_and_start(self) -> bool:
        free = self.settings.concurrency - self.active
        if free <= 0:
            return False
        jobs = self.jobs.claim(self.worker_id, free, self.settings.lock_seconds)
        for job in jobs:
            with self._lock:
                self.active += 1
            spawn(self._run_one, job, name=f"alyx-job-{job.id}")
        return len(jobs) == free

    def _run_one(self, job: Job) -> None:
        try:
            self.run_job(job)
        except Exception:  # noqa: BLE001 - its lock lapses and reclaim_stale counts the attempt
            log.exception("job %s failed unexpectedly", job.id)
        finally:
            with self._lock:
                self.active -= 1
            self.wake()
