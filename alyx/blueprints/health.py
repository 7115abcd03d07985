"""/api/health: is the server up (for everyone), and on what (for admins, and anyone in development)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from alyx import __version__
from alyx.blueprints import services
from alyx.http import json_response
from alyx.rules import Principal

bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health() -> Response:
    svc = services()
    svc.db.ping()
    report: dict[str, Any] = {"status": "ok", "version": __version__}
    caller: Principal | None = g.get("principal")
    if (caller is not None and caller.is_admin) or svc.config.server_environment == "development":
        report.update({
            "database": "sqlite" if svc.db.is_sqlite else "postgresql",
            "collections": sorted(svc.schema.collections),
            "functions": {"sandbox": svc.functions.describe_tier(), "setting": svc.config.functions_sandbox,
                          "problems": svc.functions.problems()},
        })
    return json_response(report)


@bp.get("/")
def index() -> Response:
    return json_response({"name": "Alyx", "version": __version__, "docs": "/docs", "openapi": "/api/openapi.json",
                          "health": "/api/health"})
