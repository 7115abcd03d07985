"""The background loop of a worker: run due jobs, and (in exactly one process) turn schedules into jobs.

Every worker runs jobs: claims are conditional UPDATEs, so workers share the queue safely. Only
the holder of the ``scheduler`` lease evaluates schedules; it renews the lease on every tick, and
when it dies another worker takes the lease over once it lapses. Even then a due time cannot be
queued twice: the schedule row's ``next_run_at`` is advanced with a compare-and-set in the same
transaction that inserts the job.

The loop is a ``threading.Thread(daemon=True)``: a greenlet under gunicorn's gevent worker, a real
thread under ``flask run``; it is started per worker after fork (by the app factory), never in
gunicorn's master.

Why not the ``schedule`` library for intervals: its jobs keep their next run in memory, counted
from when the process registered them, so every restart (and every worker) would restart the
count; it cannot resume from a persisted next-run time, nor take part in a database lease. The
interval arithmetic it would provide is one addition here (alyx/schedules.py), persisted.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from alyx.clock import utcnow
from alyx.errors import AlyxError
from alyx.jobs import Job, job_row
from alyx.schedules import ScheduleSpec, plan_runs

if TYPE_CHECKING:
    from alyx.events import Events

log = logging.getLogger("alyx.scheduler")

UTC = dt.timezone.utc
LEASE_NAME = "scheduler"
ON_TIME_GRACE = dt.timedelta(seconds=30)  # a due time older than this was missed (the server was down)
SCHEDULER_TICK_SECONDS = 1.0
RECLAIM_SECONDS = 5.0
PURGE_SECONDS = 600.0


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value is not None else None


class Scheduler:
    """Schedules of every function: persisted next/last runs, queued as jobs by the lease holder."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.model = events.models.schedule
        self.leader = False

    def tick(self, now: dt.datetime | None = None) -> int:
        """Take (or renew) the lease and queue every due run; returns how many jobs were queued."""
        events = self.events
        index = events.refresh()
        specs = [s for s in index.schedules if s.enabled]
        if not specs and not self.leader:
            return 0
        now_aware = (now or utcnow()).replace(tzinfo=UTC)
        if not events.leases.acquire(LEASE_NAME, events.worker_id, events.config.schedules_lease_seconds,
                                     now=_naive(now_aware)):
            if self.leader:
                log.info("%s no longer runs schedules", events.worker_id)
            self.leader = False
            return 0
        if not self.leader:
            log.info("%s runs the schedules (lease %r)", events.worker_id, LEASE_NAME)
        self.leader = True
        queued = 0
        db, m = events.db, self.model
        with db.connection():
            rows = {r["key"]: r for r in m.select().dicts()}
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
            events.wake.set()
        return queued

    def _run_due(self, spec: ScheduleSpec, row: dict[str, Any], now: dt.datetime) -> int:
        events = self.events
        stored_next = _aware(row["next_run_at"])
        catch_up = spec.catch_up or events.config.schedules_catch_up
        runs, following = plan_runs(spec, stored_next, now, catch_up, ON_TIME_GRACE)
        if not runs and following == stored_next:
            return 0
        m = self.model
        retries = events.retries_of(spec.function)
        with events.db.write():
            advanced = (m.update(next_run_at=_naive(following), updated_at=_naive(now),
                                 **({"last_run_at": _naive(runs[-1])} if runs else {}))
                        .where((m.key == spec.key) & (m.next_run_at == row["next_run_at"])).execute())
            if not advanced:  # someone else advanced it first (a lease handover race): they queue it
                return 0
            last_job = None
            for scheduled_for in runs:
                payload = {"input": spec.input, "schedule": spec.key, "scheduled_for": _iso(_naive(scheduled_for))}
                last_job = events.jobs.model.insert(job_row("function", spec.function, "schedule", payload,
                                                            1 + retries)).execute()
            if last_job is not None:
                m.update(last_job_id=last_job).where(m.key == spec.key).execute()
        if runs and len(runs) > 1:
            log.info("schedule %s: %d missed runs queued (catch_up: %s)", spec.key, len(runs), catch_up)
        return len(runs)

    def run_now(self, function: str, name: str) -> dict[str, Any]:
        """An admin runs a schedule now (its next run time stays as it was)."""
        events = self.events
        hooks = events.hooks(function)
        spec = next((s for s in hooks.schedules if s.name == name), None)
        if spec is None:
            raise AlyxError("not_found", f"Function {function!r} has no schedule named {name!r}.", 404)
        payload = {"input": spec.input, "schedule": spec.key, "scheduled_for": _iso(utcnow()), "manual": True}
        job_id = events.jobs.enqueue("function", function, "schedule", payload, 1 + events.retries_of(function))
        events.loop.ensure_started()
        events.wake.set()
        return {"job_id": job_id, "schedule": spec.key}

    def list(self) -> dict[str, Any]:
        """Every schedule with its persisted last and next run, and the status of its last job."""
        events = self.events
        index = events.refresh(force=True)
        m = self.model
        with events.db.connection():
            rows = {r["key"]: r for r in m.select().dicts()}
            job_ids = [r["last_job_id"] for r in rows.values() if r["last_job_id"] is not None]
            jm = events.jobs.model
            statuses = {j: s for j, s in jm.select(jm.id, jm.status).where(jm.id.in_(job_ids)).tuples()} \
                if job_ids else {}
        items = []
        for spec in index.schedules:
            row = rows.get(spec.key) or {}
            fresh = row.get("fingerprint") == spec.fingerprint
            items.append({
                "function": spec.function, "name": spec.name, "key": spec.key, "type": spec.type,
                "expression": spec.expression, "timezone": spec.timezone, "enabled": spec.enabled,
                "catch_up": spec.catch_up or events.config.schedules_catch_up, "input": spec.input,
                "next_run_at": _iso(row.get("next_run_at")) if fresh else None,
                "last_run_at": _iso(row.get("last_run_at")),
                "last_job_id": row.get("last_job_id"), "last_status": statuses.get(row.get("last_job_id")),
            })
        holder = events.leases.holder(LEASE_NAME)
        return {"items": items, "errors": [{"function": k, "message": v} for k, v in sorted(index.errors.items())],
                "leader": holder}


class Loop:
    """One background thread per worker process: scheduler ticks, stale-job reclaim, job runs."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.wanted = False
        self.active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the thread if this process runs jobs (events.start was called) and it is not running."""
        if not self.wanted or self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="alyx-events-loop")
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.events.wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self.events.scheduler.leader:
            try:
                self.events.leases.release(LEASE_NAME, self.events.worker_id)
            except Exception:  # noqa: BLE001 - the database may be gone already; the lease then lapses
                pass

    def _run(self) -> None:
        events = self.events
        lock = float(max(events.config.events_lock_seconds, 1))
        poll = min(max(events.config.events_poll_ms, 10) / 1000, lock / 3)
        next_tick = next_reclaim = next_renew = 0.0
        next_purge = time.monotonic() + 60
        while not self._stop.is_set():
            events.wake.clear()
            saturated = False
            try:
                now = time.monotonic()
                if now >= next_tick:
                    events.scheduler.tick()
                    next_tick = now + SCHEDULER_TICK_SECONDS
                if now >= next_reclaim:
                    events.reclaim_stale()
                    next_reclaim = now + RECLAIM_SECONDS
                if now >= next_purge and events.scheduler.leader:
                    cutoff = utcnow() - dt.timedelta(seconds=events.config.events_job_retention_seconds)
                    events.jobs.purge_done(cutoff)
                    next_purge = now + PURGE_SECONDS
                if self.active and now >= next_renew:
                    events.jobs.renew(events.worker_id, lock)
                    next_renew = now + lock / 3
                saturated = self._claim_and_start()
            except Exception:  # noqa: BLE001 - the loop must survive a failing database or function
                if self._stop.is_set():
                    return
                log.exception("events loop step failed")
            if not saturated:
                events.wake.wait(poll)

    def _claim_and_start(self) -> bool:
        events = self.events
        free = events.config.events_concurrency - self.active
        if free <= 0:
            return False
        jobs = events.jobs.claim(events.worker_id, free, float(events.config.events_lock_seconds))
        for job in jobs:
            with self._lock:
                self.active += 1
            threading.Thread(target=self._run_one, args=(job,), daemon=True, name=f"alyx-job-{job.id}").start()
        return len(jobs) == free

    def _run_one(self, job: Job) -> None:
        try:
            self.events.run_job(job)
        except Exception:  # noqa: BLE001 - its lock lapses and reclaim_stale counts the attempt
            log.exception("job %s failed unexpectedly", job.id)
        finally:
            with self._lock:
                self.active -= 1
            self.events.wake.set()
