"""POST /api/batch: several record writes in one transaction (alyx/batch.py), JSON bodies only."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx.blueprints import current_principal, services
from alyx.http import json_body, json_response

bp = Blueprint("batch", __name__, url_prefix="/api")


@bp.post("/batch")
def run_batch() -> Response:
    """``{"requests": [{"method", "url", "body"}, ...]}`` → ``[{"status", "body"}, ...]``, all or nothing."""
    return json_response(services().batch.run(json_body(), current_principal()))
