"""/api/jobs: the job queue (dead letters and their retry), admins only."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import services
from alyx.blueprints.access import admin_required
from alyx.errors import bad_request
from alyx.http import json_response

bp = Blueprint("jobs", __name__)


@bp.get("/api/jobs")
@admin_required("The job queue")
def list_jobs() -> Response:
    jobs = services().events.jobs
    return json_response({"items": jobs.list(request.args.to_dict()), "counts": jobs.counts()})


@bp.get("/api/jobs/<int:job_id>")
@admin_required("The job queue")
def view_job(job_id: int) -> Response:
    return json_response(services().events.jobs.get(checked_id(job_id)))


@bp.post("/api/jobs/<int:job_id>/retry")
@admin_required("Retrying a job")
def retry_job(job_id: int) -> Response:
    events = services().events
    job = events.jobs.retry(checked_id(job_id))
    events.loop.kick()
    return json_response(job, 202)


def checked_id(job_id: int) -> int:
    """A job id from the path, within the 64-bit id column (400 otherwise: the database cannot bind it)."""
    if job_id > 2**63 - 1:
        raise bad_request("A job id is a positive integer within 64 bits.",
                          {"id": [f"{str(job_id)[:20]}... is too large"]})
    return job_id
