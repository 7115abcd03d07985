"""/api/schedules (list with last/next run) and /api/schedules/<function>/<name>/run (admins only)."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx.blueprints import services
from alyx.blueprints.access import admin_required
from alyx.http import json_response

bp = Blueprint("schedules", __name__)


@bp.get("/api/schedules")
@admin_required("The schedule list")
def list_schedules() -> Response:
    return json_response(services().events.scheduler.list())


@bp.post("/api/schedules/<function>/<name>/run")
@admin_required("Running a schedule")
def run_schedule(function: str, name: str) -> Response:
    return json_response(services().events.scheduler.run_now(function, name), 202)
