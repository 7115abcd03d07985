"""/api/health: is the server up — status and version for everyone; the details (database, collections,
sandbox tier, runtime images, broker, workers, pending migrations) for admins. In development a summary
(database, collections, functions' tier) is public too, for the local dev loop."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx import __version__
from alyx.blueprints import current_principal, services
from alyx.http import json_response

bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health() -> Response:
    svc = services()
    caller = current_principal()
    if caller is not None and caller.is_admin:
        return json_response(svc.status.details())
    if svc.config.server_environment == "development":
        return json_response(svc.status.summary())
    return json_response(svc.status.public())


@bp.get("/")
def index() -> Response:
    return json_response({"name": "Alyx", "version": __version__, "docs": "/docs", "openapi": "/api/openapi.json",
                          "health": "/api/health"})
