"""The job runner: one attempt of a claimed job, one execution record; failures retry, then dead-letter."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from alyx.clock import utcnow
from alyx.db import Database
from alyx.errors import AlyxError
from alyx.events.incoming import delivery_headers, input_body
from alyx.events.outgoing import OutgoingWebhook, deliver
from alyx.events.trigger import log_trigger, principal_from, run_trigger
from alyx.executions import capped_text
from alyx.functions import Functions
from alyx.jobs import Job, JobQueue
from alyx.sandbox import CallResult

log = logging.getLogger("alyx.events")

# Logs the failed attempt (status: error or dead_letter, and the error) and returns the execution id.
RecordFailure = Callable[[str, dict[str, Any]], str]


class JobRunner:
    """Runs claimed jobs: function runs (hooks, webhooks, schedules, events) and outgoing deliveries."""

    def __init__(self, db: Database, jobs: JobQueue, functions: Functions,
                 outgoing: Mapping[str, OutgoingWebhook], worker_id: str) -> None:
        self.db = db
        self.jobs = jobs
        self.functions = functions
        self.outgoing = outgoing
        self.worker_id = worker_id

    def run(self, job: Job) -> str:
        """One attempt of a claimed job; returns the job's new status (done | pending | dead | lost)."""
        if job.kind == "outgoing":
            return self._deliver_outgoing(job)
        payload = job.payload or {}
        hook_input: Any = payload.get("input")
        started = utcnow()
        try:
            spec = self.functions.spec(job.target)
        except AlyxError as exc:
            return self._failed(job, _error_of(exc), self._recorder(job.target, "", job.trigger_type, hook_input,
                                                                     None, started))
        body = headers = None
        # The job keeps its caller: a hook's writer, an event's publisher; none (anonymous) for a webhook's sender
        # and a schedule.
        caller = principal_from(payload.get("caller"))
        if job.trigger_type == "webhook":
            body = input_body(hook_input)
            headers = delivery_headers(hook_input)
        # Not x-alyx-*: the sandbox manager reserves those names for the runtime protocol.
        headers = [*(headers or []), ("alyx-job-id", str(job.id)), ("alyx-attempt", str(job.attempts))]
        try:
            result, _ = run_trigger(self.functions, spec, job.trigger_type, hook_input, caller=caller, body=body,
                                    headers=headers, record=False)
        except AlyxError as exc:  # no sandbox tier, or shutting down
            return self._failed(job, _error_of(exc), self._recorder(spec.name, spec.version, job.trigger_type,
                                                                     hook_input, None, started))
        if result.outcome == "success" and result.status < 500:
            with self.db.connection(), self.db.write():
                execution_id = log_trigger(self.functions, spec.name, spec.version, job.trigger_type, hook_input,
                                           result, started)
                return "done" if self.jobs.succeed(job, self.worker_id, execution_id) else "lost"
        error = dict(result.error or {"code": "function_error",
                                      "message": f"The function answered with status {result.status}."})
        # A run that answered (a 5xx) is an error until its last attempt; a fault keeps its own outcome.
        return self._failed(job, error, lambda status, err: log_trigger(
            self.functions, spec.name, spec.version, job.trigger_type, hook_input, result, started,
            status=status if status == "dead_letter" or result.outcome != "success" else "error", error=err))

    def reclaim_stale(self) -> None:
        """Jobs whose worker died mid-attempt: log the lost attempt, retry or dead-letter them."""
        for job, status in self.jobs.reclaim_stale():
            hook_input = (job.payload or {}).get("input")
            error = {"code": "worker_lost", "message": "The worker running this attempt stopped before it finished.",
                     "details": {"job_id": job.id, "attempt": job.attempts, "max_attempts": job.max_attempts,
                                 "retrying": status == "pending"}}
            name = job.target if job.kind == "function" else f"webhook:{job.target}"
            log_trigger(self.functions, name, "", job.trigger_type, hook_input, None, utcnow(),
                        status="dead_letter" if status == "dead" else "crashed", error=error)
            log.warning("job %s lost its worker during attempt %d; now %s", job.id, job.attempts, status)

    def _deliver_outgoing(self, job: Job) -> str:
        event = (job.payload or {}).get("event")
        started = utcnow()
        hook = self.outgoing.get(job.target)
        name = f"webhook:{job.target}"
        if hook is None:
            error = {"code": "webhook_removed", "message": f"No outgoing webhook {job.target!r} in alyx.yaml now.",
                     "details": {}}
            return self._failed(job, error, self._recorder(name, "", "database", event, None, started))
        delivery = deliver(hook, event, str(job.id), job.attempts)
        output = {"status": delivery.status, "url": hook.url, "body": capped_text(delivery.body)}
        if delivery.problem is None:
            with self.db.connection(), self.db.write():
                execution_id = log_trigger(self.functions, name, "", "database", event, None, started,
                                           status="success", error=None, output=output,
                                           duration_ms=delivery.duration_ms)
                return "done" if self.jobs.succeed(job, self.worker_id, execution_id) else "lost"
        error = {"code": "webhook_delivery_failed", "message": delivery.problem, "details": {"status": delivery.status}}
        return self._failed(job, error, self._recorder(name, "", "database", event, None, started, output=output,
                                                       duration_ms=delivery.duration_ms))

    def _recorder(self, function: str, version: str, trigger: str, hook_input: Any, result: CallResult | None,
                  started: dt.datetime, **given: Any) -> RecordFailure:
        def record(status: str, error: dict[str, Any]) -> str:
            return log_trigger(self.functions, function, version, trigger, hook_input, result, started,
                               status=status, error=error, **given)
        return record

    def _failed(self, job: Job, error: dict[str, Any], record: RecordFailure) -> str:
        details = dict(error.get("details") or {})
        details.update({"job_id": job.id, "attempt": job.attempts, "max_attempts": job.max_attempts,
                        "retrying": not job.final_attempt})
        error = {**error, "details": details}
        with self.db.connection(), self.db.write():
            execution_id = record("dead_letter" if job.final_attempt else "error", error)
            status = self.jobs.fail(job, self.worker_id, error, execution_id)
        if status == "dead":
            log.warning("job %s (%s %s) is dead after %d attempts: %s", job.id, job.trigger_type, job.target,
                        job.attempts, error.get("message"))
        return status


def _error_of(exc: AlyxError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "details": {}}
