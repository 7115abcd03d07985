"""/api/schedules (list with last/next run), /api/schedules/<function>/<name>/run, /api/jobs, /api/events.

Admins only: schedules, the job queue (dead letters and their retry) and publishing custom events.
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, services
from alyx.callback import ENVIRON_KEY
from alyx.errors import AlyxError
from alyx.http import json_body, json_response

bp = Blueprint("schedules", __name__)


def _require_admin(what: str) -> None:
    principal = current_principal()
    if principal is None:
        raise AlyxError("unauthorized", f"{what} is for admins: sign in.", 401)
    if not principal.is_admin:
        raise AlyxError("forbidden", f"{what} is for admins only.", 403)


@bp.get("/api/schedules")
def list_schedules() -> Response:
    _require_admin("The schedule list")
    return json_response(services().events.scheduler.list())


@bp.post("/api/schedules/<function>/<name>/run")
def run_schedule(function: str, name: str) -> Response:
    _require_admin("Running a schedule")
    return json_response(services().events.scheduler.run_now(function, name), 202)


@bp.get("/api/jobs")
def list_jobs() -> Response:
    _require_admin("The job queue")
    events = services().events
    return json_response({"items": events.jobs.list(request.args.to_dict()), "counts": events.jobs.counts()})


@bp.get("/api/jobs/<int:job_id>")
def view_job(job_id: int) -> Response:
    _require_admin("The job queue")
    return json_response(services().events.jobs.get(job_id))


@bp.post("/api/jobs/<int:job_id>/retry")
def retry_job(job_id: int) -> Response:
    _require_admin("Retrying a job")
    events = services().events
    job = events.jobs.retry(job_id)
    events.loop.kick()
    return json_response(job, 202)


@bp.post("/api/events")
def publish_event() -> Response:
    if ENVIRON_KEY not in request.environ:  # any function may publish through its client (req.alyx)
        _require_admin("Publishing events over HTTP")
    return json_response(services().events.publish(json_body()), 202)
