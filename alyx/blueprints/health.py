"""/api/health: is the server up, and on what."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx import __version__
from alyx.blueprints import services
from alyx.http import json_response

bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health() -> Response:
    svc = services()
    svc.db.ping()
    return json_response({
        "status": "ok",
        "version": __version__,
        "database": "sqlite" if svc.db.is_sqlite else "postgresql",
        "collections": sorted(svc.schema.collections),
        "functions": {"sandbox": svc.functions.describe_tier(), "setting": svc.config.functions_sandbox,
                      "problems": svc.functions.problems()},
    })


@bp.get("/")
def index() -> Response:
    return json_response({"name": "Alyx", "version": __version__, "docs": "/docs", "openapi": "/api/openapi.json",
                          "health": "/api/health"})
