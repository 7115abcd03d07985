"""/api/openapi.json and the interactive docs at /docs (Swagger UI files ship in the wheel: offline)."""
from __future__ import annotations

from flask import Blueprint, Flask, Response
from flask_swagger_ui import get_swaggerui_blueprint

from alyx.blueprints import services
from alyx.http import json_response
from alyx.openapi import build_openapi

bp = Blueprint("openapi", __name__)


@bp.get("/api/openapi.json")
def openapi_document() -> Response:
    svc = services()
    cached = svc.__dict__.get("_openapi")
    if cached is None:
        cached = svc.__dict__["_openapi"] = build_openapi(svc.schema, svc.config)
    return json_response(cached)


def register_docs(app: Flask) -> None:
    app.register_blueprint(bp)
    swagger = get_swaggerui_blueprint("/docs", "/api/openapi.json", config={"app_name": "Alyx API"},
                                      blueprint_name="swagger_ui")
    app.register_blueprint(swagger)
