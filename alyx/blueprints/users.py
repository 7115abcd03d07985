"""/api/admin/users: what an admin does to accounts beyond REST on the users collection — create one
with a password (and a role), end all of a user's sessions. Admins only."""
from __future__ import annotations

from flask import Blueprint, Response

from alyx.blueprints import current_principal, services
from alyx.blueprints.access import admin_required
from alyx.http import json_body, json_response

bp = Blueprint("admin_users", __name__, url_prefix="/api/admin/users")


@bp.post("")
@admin_required("Creating users")
def create_user() -> Response:
    """A user with the users collection's fields, role, verified and an optional password (201)."""
    admin = current_principal()
    assert admin is not None  # admin_required let the request through
    return json_response(services().auth.create_user(json_body(), admin), 201)


@bp.delete("/<user_id>/sessions")
@admin_required("Revoking sessions")
def revoke_sessions(user_id: str) -> Response:
    """Every session of the user ends: refresh tokens stop working at once, access tokens and realtime
    sockets within auth.session_check_seconds."""
    return json_response({"revoked": services().auth.revoke_sessions_of(user_id)})
