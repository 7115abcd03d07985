"""POST /api/webhooks/<function>: verify the signature over the raw body, queue one delivery (202)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import services
from alyx.http import json_response

bp = Blueprint("webhooks", __name__)


@bp.post("/api/webhooks/<name>")
def receive(name: str) -> Response:
    events = services().events
    body = request.get_data(cache=False)  # the raw bytes: signatures are over exactly these
    accepted = events.receive_webhook(name, body, dict(request.headers.items()))
    return json_response(accepted, 202)
