"""The OpenAPI paths of /api/admin/*: what an admin does to accounts beyond REST on the users collection."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apispec import APISpec

from alyx.openapi.components import INTEGER, errors, json_request, obj, path_param, response
from alyx.openapi.system import admin_operation


def admin_schemas(users_create: Mapping[str, Any], new_password: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Bodies of the admin routes; ``users_create`` is the users collection's create schema."""
    fields = {k: v for k, v in users_create.get("properties", {}).items() if k != "id"}
    return {
        "AdminUserCreate": obj({**fields, "password": {**new_password, "description": "Optional: without one the "
                                                       "user signs in through OAuth or a password reset"}},
                               sorted({"email", *users_create.get("required", [])}), closed=True,
                               description="The users collection's fields (role and verified included) and a "
                                           "password"),
        "SessionsRevoked": obj({"revoked": {**INTEGER, "description": "How many sessions were open"}}, ["revoked"]),
    }


def add_admin_paths(api: APISpec, users_record: str) -> None:
    """POST /api/admin/users and DELETE /api/admin/users/{user_id}/sessions."""
    api.path(path="/api/admin/users", operations={"post": admin_operation(
        "admin_create_user", "admin", "Create a user (an admin too) with a password",
        {"201": response("The user", users_record),
         **errors("400", "409", "415", "422", notes={"409": "A user with that email exists"})},
        requestBody=json_request("AdminUserCreate"))})
    api.path(path="/api/admin/users/{user_id}/sessions", operations={"delete": admin_operation(
        "admin_revoke_sessions", "admin", "End every session of a user (refresh tokens at once; access tokens "
        "and realtime sockets within auth.session_check_seconds)",
        {"200": response("How many ended", "SessionsRevoked"), **errors("404", notes={"404": "No such user"})},
        parameters=[path_param("user_id")])})


__all__ = ["add_admin_paths", "admin_schemas"]
