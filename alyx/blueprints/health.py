"""/api/health: is the server up (for everyone); its database and collections (admins; anyone in development)."""
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
    # Public: status, version and the functions' state (tests/test_functions.py reads it anonymously).
    report: dict[str, Any] = {
        "status": "ok", "version": __version__,
        "functions": {"sandbox": svc.functions.describe_tier(), "setting": svc.config.functions_sandbox,
                      "problems": svc.functions.problems()},
    }
    caller: Principal | None = g.get("principal")
    if (caller is not None and caller.is_admin) or svc.config.server_environment == "development":
        report["database"] = "sqlite" if svc.db.is_sqlite else "postgresql"
        report["collections"] = sorted(svc.schema.collections)
    return json_response(report)


@bp.get("/")
def index() -> Response:
    return json_response({"name": "Alyx", "version": __version__, "docs": "/docs", "openapi": "/api/openapi.json",
                          "health": "/api/health"})
