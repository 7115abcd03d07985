"""POST /api/webhooks/<function>: check the signature over the raw body; the function answers (sync) or 202 (async)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import services
from alyx.blueprints.functions import function_response
from alyx.http import json_response, request_body

bp = Blueprint("webhooks", __name__)


@bp.post("/api/webhooks/<name>")
def receive(name: str) -> Response:
    body = request_body()  # the raw bytes: signatures are over exactly these
    answer = services().events.receive_webhook(name, body, dict(request.headers.items()))
    if answer.result is None:
        return json_response(answer.queued, 202)
    return function_response(answer.result, answer.execution_id)
