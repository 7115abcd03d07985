"""The OpenAPI paths of /api/auth/*: password sign-up and login, tokens, the signed-in user, OAuth2/OIDC."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apispec import APISpec

from alyx.openapi.components import (
    INTEGER,
    NO_TOKEN,
    OPTIONAL_TOKEN,
    SIGNED_IN,
    STRING,
    errors,
    json_request,
    obj,
    path_param,
    query_param,
    ref,
    response,
)
from alyx.passwords import MAX_PASSWORD_LENGTH

TAG = "auth"
PASSWORD = {"type": "string", "minLength": 1, "format": "password"}
NEW_PASSWORD = {**PASSWORD, "maxLength": MAX_PASSWORD_LENGTH}  # minLength: auth.password_min_length


def auth_schemas(users_create: Mapping[str, Any], users_record: str, min_password: int) -> dict[str, dict[str, Any]]:
    """Request and response bodies of the auth routes; ``users_create`` is the users collection's create schema,
    ``min_password`` the shortest password the policy accepts (auth.password_min_length)."""
    new_password = {**NEW_PASSWORD, "minLength": min_password}
    own_fields = {k: v for k, v in users_create.get("properties", {}).items() if k not in ("id", "role", "verified")}
    register = obj({**own_fields, "password": new_password,
                    "passwordConfirm": {**new_password, "description": "Optional; must equal password (422)"}},
                   sorted({"email", "password", *users_create.get("required", [])} - {"role", "verified"}),
                   closed=True, description="The users collection's own fields plus the password "
                                            "(role and verified cannot be chosen: 403).")
    return {
        "Register": register,
        "Login": obj({"email": {"type": "string", "minLength": 1}, "password": PASSWORD}, ["email", "password"]),
        "Refresh": obj({"refresh_token": {"type": "string", "minLength": 1, "maxLength": 200}}, ["refresh_token"]),
        "Logout": obj({"refresh_token": STRING},
                      description="Optional: without it, the session of the Bearer access token ends."),
        "PasswordChange": obj({"old_password": {**PASSWORD, "description": "Required when a password is set."},
                               "password": new_password}, ["password"]),
        "Tokens": obj({"access_token": STRING, "refresh_token": STRING,
                       "token_type": {"type": "string", "enum": ["Bearer"]},
                       "expires_in": {**INTEGER, "description": "Seconds the access token is valid."},
                       "user": ref(users_record)},
                      ["access_token", "refresh_token", "token_type", "expires_in", "user"]),
        "Providers": obj({"providers": {"type": "array", "items": STRING}}, ["providers"]),
        "EmailRequest": obj({"email": {"type": "string", "minLength": 1}}, ["email"]),
        "EmailChangeRequest": obj({"new_email": {"type": "string", "minLength": 1}}, ["new_email"]),
        "TokenConfirm": obj({"token": {"type": "string", "minLength": 1}}, ["token"]),
        "PasswordResetConfirm": obj({"token": {"type": "string", "minLength": 1}, "password": new_password},
                                    ["token", "password"]),
    }


def add_auth_paths(api: APISpec, users_record: str) -> None:
    """Every /api/auth route (alyx/blueprints/auth.py)."""
    signed_in = response("Signed in", "Tokens")

    def post(op_id: str, summary: str, body: str | None, responses: dict[str, Any], security: Any = NO_TOKEN,
             required: bool = True) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": [TAG], "summary": summary, "operationId": op_id, "security": security,
                              "responses": responses}
        if body is not None:
            op["requestBody"] = json_request(body, required)
        return {"post": op}

    api.path(path="/api/auth/register", operations=post(
        "auth_register", "Create a user with a password and sign in", "Register",
        {"201": response("Registered and signed in", "Tokens"),
         **errors("400", "403", "409", "415", "422", "429",
                  notes={"403": "Registration is closed, or role/verified were sent"})}))
    api.path(path="/api/auth/login", operations=post(
        "auth_login", "Sign in with email and password", "Login",
        {"200": signed_in, **errors("400", "401", "415", "422", "429",
                                    notes={"429": "Too many failed logins for this account or address"})}))
    api.path(path="/api/auth/refresh", operations=post(
        "auth_refresh", "Rotate a refresh token for a new token pair", "Refresh",
        {"200": signed_in, **errors("400", "401", "415",
                                    notes={"401": "Invalid, expired or reused refresh token (reuse ends the "
                                                  "session)"})}))
    api.path(path="/api/auth/logout", operations=post(
        "auth_logout", "End the session of a refresh token or of the Bearer access token", "Logout",
        {"204": response("Session ended"), **errors("400", "401", "415")},
        security=OPTIONAL_TOKEN, required=False))
    api.path(path="/api/auth/password", operations=post(
        "auth_change_password", "Change the signed-in user's password (ends their other sessions)",
        "PasswordChange",
        {"204": response("Password changed"),
         **errors("400", "401", "403", "415", "422", notes={"403": "The current password is wrong"})},
        security=SIGNED_IN))
    quiet = "204 whether or not the address has an account (nothing is revealed); a mail goes out if it does"
    for path, op_id, summary, body in (
            ("request-verification", "auth_request_verification", "Mail a verification link", "EmailRequest"),
            ("request-password-reset", "auth_request_password_reset", "Mail a password-reset link", "EmailRequest")):
        api.path(path=f"/api/auth/{path}", operations=post(
            op_id, summary, body, {"204": response(quiet), **errors("400", "415", "422", "429")}))
    api.path(path="/api/auth/request-email-change", operations=post(
        "auth_request_email_change", "Mail a confirmation link to a new address", "EmailChangeRequest",
        {"204": response(quiet), **errors("400", "401", "415", "422", "429")}, security=SIGNED_IN))
    for path, op_id, summary, body in (
            ("confirm-verification", "auth_confirm_verification", "Mark the account verified", "TokenConfirm"),
            ("confirm-password-reset", "auth_confirm_password_reset",
             "Set a new password (every session of the user ends)", "PasswordResetConfirm"),
            ("confirm-email-change", "auth_confirm_email_change",
             "Move the account to the confirmed address (its sessions end)", "TokenConfirm")):
        api.path(path=f"/api/auth/{path}", operations=post(op_id, summary, body, {
            "204": response("Done"), **errors("400", "415", "422", notes={"400": "Invalid, used or expired token"})}))
    api.path(path="/api/auth/me", operations={"get": {
        "tags": [TAG], "summary": "The signed-in user", "operationId": "auth_me", "security": SIGNED_IN,
        "responses": {"200": response("The user's record", users_record), **errors("401")}}})
    api.path(path="/api/auth/providers", operations={"get": {
        "tags": [TAG], "summary": "The configured OAuth providers", "operationId": "auth_providers",
        "security": NO_TOKEN, "responses": {"200": response("Provider names", "Providers")}}})
    provider = path_param("provider", description="A provider name from /api/auth/providers")
    api.path(path="/api/auth/oauth/{provider}", operations={"get": {
        "tags": [TAG], "summary": "Start an OAuth login: redirect to the provider", "operationId": "auth_oauth_start",
        "security": NO_TOKEN, "parameters": [provider],
        "description": "Redirects (302) to the provider's authorize URL with state, PKCE and nonce; the state is "
                       "also set in the `alyx_oauth_state` cookie, which the callback checks.",
        "responses": {"302": {"description": "Redirect to the provider",
                              "headers": {"Location": {"schema": {"type": "string", "format": "uri"}},
                                          "Set-Cookie": {"schema": STRING}}},
                      **errors("404", notes={"404": "No such provider is configured"})}}})
    api.path(path="/api/auth/oauth/{provider}/callback", operations={"get": {
        "tags": [TAG], "summary": "Finish an OAuth login (the provider redirects here)",
        "operationId": "auth_oauth_callback", "security": NO_TOKEN,
        "parameters": [provider, query_param("state", STRING), query_param("code", STRING),
                       query_param("error", STRING, "Set by the provider when the user refused")],
        "responses": {"200": signed_in,
                      **errors("400", "401", "404", notes={
                          "400": "The state does not match this browser's login",
                          "401": "The provider refused the login or the code exchange failed",
                          "404": "No such provider is configured"})}}})
