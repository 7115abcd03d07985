"""POST /api/events: publish a custom event (admins, or any function through its client)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, services
from alyx.blueprints.access import admin_required
from alyx.callback import ENVIRON_KEY
from alyx.http import json_body, json_response

bp = Blueprint("events", __name__)


def _from_a_function() -> bool:
    """A request through the callback socket: any function may publish through req.alyx."""
    return ENVIRON_KEY in request.environ


@bp.post("/api/events")
@admin_required("Publishing events over HTTP", unless=_from_a_function)
def publish_event() -> Response:
    return json_response(services().events.publish(json_body(), current_principal()), 202)
