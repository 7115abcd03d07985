"""The events service of one app: wires the hook catalog, outbox, sync hooks, job runner and schedules.

No Flask here: alyx/blueprints/webhooks.py and schedules.py are the HTTP side.
"""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from alyx.clock import utcnow
from alyx.config import CONFIG_FILE, Config
from alyx.db import Database
from alyx.errors import AlyxError
from alyx.events.incoming import WebhookAnswer, clean_event, delivery_headers, webhook_input
from alyx.events.index import HookCatalog, HookIndex
from alyx.events.outbox import outbox_rows
from alyx.events.outgoing import parse_outgoing
from alyx.events.replays import ReplayGuard
from alyx.events.runner import JobRunner
from alyx.events.sync_hooks import SyncHooks
from alyx.events.trigger import log_trigger, run_trigger
from alyx.functions import Functions, principal_dict
from alyx.jobs import Job, JobQueue, job_row
from alyx.leases import Leases
from alyx.models import build_event_models
from alyx.records import ChangeEvent
from alyx.rules import Principal
from alyx.sandbox.manifest import FunctionHooks
from alyx.scheduler import JobLoop, JobLoopSettings, Scheduler


class Events:
    """Hooks, webhooks, custom events and the job runner of one app (see alyx/events/__init__.py)."""

    def __init__(self, config: Config, db: Database, functions: Functions) -> None:
        self.config = config
        self.db = db
        self.functions = functions
        self.models = build_event_models(db.peewee)
        self.jobs = JobQueue(db, self.models.job, config.events_backoff_base_ms / 1000,
                             float(config.events_backoff_max_seconds))
        self.leases = Leases(db, self.models.lease)
        self.replays = ReplayGuard(db, self.models.replay)
        self.outgoing = parse_outgoing(config.webhooks, os.environ, str(config.project_dir / CONFIG_FILE))
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.catalog = HookCatalog(functions.registry, config.events_retries, lambda: self.loop.ensure_started())
        self.sync_hooks = SyncHooks(self.catalog, functions, float(config.events_sync_timeout_seconds))
        self.runner = JobRunner(db, self.jobs, functions, self.outgoing, self.worker_id)
        self.scheduler = Scheduler(db, self.models.schedule, self.jobs, self.leases, self, self.worker_id,
                                   lease_seconds=config.schedules_lease_seconds,
                                   catch_up=config.schedules_catch_up, notify=lambda: self.loop.kick())
        self.loop = JobLoop(self.jobs, self.scheduler, JobLoopSettings.of(config), run_job=self.run_job,
                            reclaim_stale=self.reclaim_stale)
        # Its record hooks (outbox, after_commit, sync_hooks) are registered by alyx/services.py.

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Run jobs and schedules in this process (a worker, after fork), unless events.runner is off."""
        if self.config.events_runner == "off":
            return
        self.loop.wanted = True
        self.refresh(force=True)
        if self.index.busy or self.outgoing or self._queue_has_work():
            self.loop.ensure_started()

    def close(self) -> None:
        self.loop.stop()

    def _queue_has_work(self) -> bool:
        counts = self.jobs.counts()
        return bool(counts.get("pending") or counts.get("running"))

    # -- what manifests listen to ------------------------------------------------------------------
    @property
    def index(self) -> HookIndex:
        return self.catalog.index

    def refresh(self, force: bool = False) -> HookIndex:
        """Re-read manifests that changed (at most once a second unless forced); returns the index."""
        return self.catalog.refresh(force)

    def hooks(self, name: str) -> FunctionHooks:
        """The hooks of one function, fresh (404 when there is no such function, 503 when its manifest is wrong)."""
        return self.catalog.hooks(name)

    def retries_of(self, name: str) -> int:
        return self.catalog.retries_of(name)

    # -- outbox (inside the record's write transaction) ----------------------------------------
    def outbox(self, event: ChangeEvent) -> None:
        """Journal writer: insert the change's jobs in the write's own transaction, and wake the loop once
        it commits (not on a rollback; a write that queues nothing registers nothing)."""
        rows = outbox_rows(event, self.index, self.outgoing, self.retries_of, self.config.events_retries)
        if rows:
            self.jobs.insert(rows)
            self.db.after_commit(self.loop.kick)

    # -- jobs ----------------------------------------------------------------------------------
    def run_due_jobs(self, limit: int | None = None) -> int:
        """Claim and run due jobs in this thread (the loop and tests use it); returns how many ran."""
        claimed = self.jobs.claim(self.worker_id, limit or self.config.events_concurrency,
                                  float(self.config.events_lock_seconds))
        for job in claimed:
            self.run_job(job)
        return len(claimed)

    def run_job(self, job: Job) -> str:
        """One attempt of a claimed job; returns the job's new status (done | pending | dead | lost)."""
        return self.runner.run(job)

    def reclaim_stale(self) -> None:
        """Jobs whose worker died mid-attempt: log the lost attempt, retry or dead-letter them."""
        self.runner.reclaim_stale()

    # -- incoming webhooks ---------------------------------------------------------------------
    def receive_webhook(self, name: str, body: bytes, headers: Mapping[str, str]) -> WebhookAnswer:
        """Verify; then run the function now (``mode: sync``) or queue one delivery (``mode: async``).

        In both modes a failed check of a ``required: true`` verification is logged (status denied) and
        answered 401 before any code runs.
        """
        spec = self.functions.spec(name)
        hook = spec.hooks.webhook if spec.hooks else None
        if hook is None:
            raise AlyxError("not_found", f"Function {name!r} has no webhook hook.", 404)
        hook_input, result = webhook_input(hook, body, headers,
                                           lambda key, expires: self.replays.first_time(name, key, expires))
        if hook.required and not result.verified:
            message = f"Webhook signature check failed: {result.error}."
            log_trigger(self.functions, name, spec.version, "webhook", hook_input, None, utcnow(), status="denied",
                        error={"code": "invalid_signature", "message": message, "details": {}})
            raise AlyxError("invalid_signature", message, 401)
        if hook.mode == "sync":
            run, execution_id = run_trigger(self.functions, spec, "webhook", hook_input, caller=None, body=body,
                                            headers=delivery_headers(hook_input))
            return WebhookAnswer(run, execution_id)
        self.refresh()
        job_id = self.jobs.enqueue("function", name, "webhook", {"input": hook_input, "caller": None},
                                   1 + self.retries_of(name))
        self.loop.kick()
        return WebhookAnswer(queued={"job_id": job_id, "verified": result.verified,
                                     "verification_error": result.error})

    # -- custom events -------------------------------------------------------------------------
    def publish(self, event: Any, publisher: Principal | None) -> dict[str, Any]:
        """Queue an event {type, source?, action?, payload?} for every function whose hooks subscribe to it;
        each run calls the API back as ``publisher`` (or as the server with ``run_as: system``)."""
        clean = clean_event(event)
        targets = self.refresh().subscribers(clean)
        payload = {"input": clean, "caller": principal_dict(publisher)}
        rows = [job_row("function", name, "event", payload, 1 + self.retries_of(name)) for name in targets]
        if rows:
            with self.db.connection(), self.db.write():
                self.jobs.insert(rows)
            self.loop.kick()
        return {"delivered_to": targets}
