"""/api/executions: the execution log of function runs, admins only."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import services
from alyx.blueprints.access import admin_required
from alyx.http import json_response

bp = Blueprint("executions", __name__)


@bp.get("/api/executions")
@admin_required("The execution log")
def list_executions() -> Response:
    """Newest first, a page of `limit`; `next` is the `before` of the next (older) page."""
    return json_response(services().functions.executions.list(request.args.to_dict()))


@bp.get("/api/executions/<execution_id>")
@admin_required("The execution log")
def view_execution(execution_id: str) -> Response:
    return json_response(services().functions.executions.get(execution_id))
