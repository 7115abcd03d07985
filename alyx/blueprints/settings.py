"""/api/settings: the effective configuration with every secret masked (admins only)."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx.blueprints import services
from alyx.blueprints.access import admin_required
from alyx.config import masked_settings
from alyx.http import json_response

bp = Blueprint("settings", __name__)


@bp.get("/api/settings")
@admin_required("The settings")
def list_settings() -> Response:
    """Secrets are masked here, on the server: they never reach the browser."""
    config = services().config
    return json_response({"items": masked_settings(config), "project_dir": str(config.project_dir)})
