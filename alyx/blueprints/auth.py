"""/api/auth/*: register, login, refresh, logout, me, password, account flows (verification, password
reset, email change), OAuth2/OIDC; plus the request hooks
that rate-limit the API and set g.principal from `Authorization: Bearer`."""
from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, g, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from alyx.account_flows import AccountFlows
from alyx.auth import Client, unauthorized
from alyx.blueprints import request_info, services
from alyx.blueprints.access import signed_in_principal, signed_in_required
from alyx.callback import ENVIRON_KEY
from alyx.errors import AlyxError
from alyx.http import json_body, json_response
from alyx.ratelimit import RateLimiter
from alyx.rules import Principal
from alyx.services import Services

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

# Endpoints that must work with a missing, expired or bad access token (they authenticate otherwise).
TOKENLESS_ENDPOINTS = {"auth.register", "auth.login", "auth.refresh", "auth.logout", "auth.oauth_start",
                       "auth.oauth_callback", "auth.providers", "auth.request_verification",
                       "auth.confirm_verification", "auth.request_password_reset", "auth.confirm_password_reset",
                       "auth.confirm_email_change"}
OAUTH_COOKIE = "alyx_oauth_state"


def client_ip() -> str | None:
    """The caller's address; behind server.proxy_count trusted proxies, taken from X-Forwarded-For."""
    return client_address(request.environ, services().config.server_proxy_count)


def client_address(environ: Mapping[str, Any], proxy_count: int) -> str | None:
    """``client_ip`` of a WSGI environ (the fast CRUD dispatch has no Flask request)."""
    if proxy_count:
        forwarded: list[str] = [p.strip() for p in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",") if p.strip()]
        if len(forwarded) >= proxy_count:
            return forwarded[-proxy_count]
    remote: str | None = environ.get("REMOTE_ADDR")
    return remote


def client() -> Client:
    return Client(client_ip(), request.headers.get("User-Agent"))


def bearer_token(header: str | None = None) -> str | None:
    """The token of `Authorization: Bearer <token>` (of this request, or ``header``); None without the
    header; 401 when it is malformed."""
    header = request.headers.get("Authorization") if header is None else header
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("The Authorization header must be 'Bearer <access token>'.", "invalid_token")
    return token.strip()


def admit(svc: Services, environ: Mapping[str, Any], path: str, tokenless: bool = False
          ) -> tuple[Principal | None, str | None]:
    """What runs before every request (the Flask hook and the fast CRUD dispatch): the API rate limit
    (429), then the caller of its bearer token (401 for a bad one) and their session id; a request
    that came through the functions' callback socket is made by the invocation's caller."""
    limiter = svc.api_limiter
    if limiter is not None and path.startswith("/api/"):
        wait = limiter.hit(client_address(environ, svc.config.server_proxy_count) or "-")
        if wait:
            seconds = RateLimiter.retry_after(wait)
            raise AlyxError("rate_limited", f"Too many requests; try again in {seconds} seconds.", 429,
                            {"retry_after": seconds}, {"Retry-After": str(seconds)})
    principal, session_id = None, None
    if not tokenless:
        token = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        if token is not None:
            principal, session_id = svc.auth.authenticate(token)
    if ENVIRON_KEY in environ:  # the callback socket strips any Authorization header
        principal = environ[ENVIRON_KEY]
    return principal, session_id


def install_auth(app: Flask) -> None:
    """Load the signing keys now (a missing secret stops start-up) and install the request hooks."""
    svc = app.extensions["alyx"]
    svc.auth.keys  # noqa: B018 - fail at start, not at the first login
    svc.oauth  # noqa: B018 - and on a bad auth.oauth section

    @app.before_request
    def _authenticate() -> None:
        g.principal, g.session_id = admit(svc, request.environ, request.path,
                                          request.endpoint in TOKENLESS_ENDPOINTS)

    app.register_blueprint(bp)


@bp.post("/register")
def register() -> Response:
    return json_response(services().auth.register(json_body(), client(), request_info()), 201)


@bp.post("/login")
def login() -> Response:
    return json_response(services().auth.login(json_body(), client()))


@bp.post("/refresh")
def refresh() -> Response:
    body = json_body()
    return json_response(services().auth.refresh(body.get("refresh_token") if isinstance(body, dict) else None))


@bp.post("/logout")
def logout() -> Response:
    """Ends the session of the refresh token in the body, or of the Bearer access token."""
    auth = services().auth
    refresh_token = None
    if request.content_length:
        body = json_body()
        refresh_token = body.get("refresh_token") if isinstance(body, dict) else None
    session_id = None
    if not refresh_token:
        token = bearer_token()
        if token is None:
            raise unauthorized("Send {\"refresh_token\": ...} or an Authorization: Bearer access token.")
        _, session_id = auth.authenticate(token)
    auth.logout(refresh_token, session_id)
    return Response(status=204)


@bp.get("/me")
@signed_in_required
def me() -> Response:
    return json_response(services().auth.me(signed_in_principal()))


@bp.post("/password")
@signed_in_required
def change_password() -> Response:
    """{"old_password", "password"}: sets a new password and ends the user's other sessions."""
    services().auth.change_password(signed_in_principal(), g.session_id, json_body())
    return Response(status=204)


# The account flows that need no token, in URL order: URL → the AccountFlows step it runs (endpoint
# auth.<step name>). Each hands the JSON body over and answers 204, whether or not a mail went out.
#   request-verification   {"email"}: mails a verification link if the address has an unverified account
#   confirm-verification   {"token"}: the account is verified
#   request-password-reset {"email"}: mails a reset link if the address has an account
#   confirm-password-reset {"token", "password"}: sets the password; every session of the user ends
#   confirm-email-change   {"token"}: the account moves to the new address (verified); its sessions end
TOKENLESS_FLOWS: tuple[tuple[str, Callable[[AccountFlows, Any], None]], ...] = (
    ("/request-verification", AccountFlows.request_verification),
    ("/confirm-verification", AccountFlows.confirm_verification),
    ("/request-password-reset", AccountFlows.request_password_reset),
    ("/confirm-password-reset", AccountFlows.confirm_password_reset),
    ("/confirm-email-change", AccountFlows.confirm_email_change),
)


def tokenless_flow(step: Callable[[AccountFlows, Any], None]) -> Callable[[], Response]:
    """The view for one tokenless account flow: the JSON body goes to `step`; 204."""
    def view() -> Response:
        step(services().accounts, json_body())
        return Response(status=204)
    view.__name__ = view.__qualname__ = step.__name__
    view.__doc__ = step.__doc__
    return view


for _url, _step in TOKENLESS_FLOWS:
    bp.add_url_rule(_url, endpoint=_step.__name__, view_func=tokenless_flow(_step), methods=["POST"])


@bp.post("/request-email-change")
@signed_in_required
def request_email_change() -> Response:
    """{"new_email"} + Bearer: mails a confirmation link to the new address; 204 either way."""
    services().accounts.request_email_change(signed_in_principal(), json_body())
    return Response(status=204)


@bp.get("/providers")
def providers() -> Response:
    return json_response({"providers": services().oauth.provider_names()})


@bp.get("/oauth/<provider>")
def oauth_start(provider: str) -> WerkzeugResponse:
    """Redirect to the provider; the state also goes into a cookie so the callback is bound to this browser."""
    oauth = services().oauth
    url, state = oauth.start(provider, request.base_url.rstrip("/") + "/callback")
    response = redirect(url, 302)
    response.set_cookie(OAUTH_COOKIE, state, max_age=oauth.STATE_TTL, httponly=True, samesite="Lax",
                        secure=request.is_secure, path=f"/api/auth/oauth/{provider}")
    return response


@bp.get("/oauth/<provider>/callback")
def oauth_callback(provider: str) -> Response:
    oauth = services().oauth
    if request.args.get("error"):
        raise AlyxError("oauth_denied", f"The provider refused the login: {request.args['error'][:100]}.", 401)
    state = request.args.get("state") or ""
    cookie = request.cookies.get(OAUTH_COOKIE) or ""
    if not state or not cookie or not secrets.compare_digest(state, cookie):
        raise AlyxError("oauth_state_mismatch", "The OAuth state does not match this browser's login; start again.",
                        400)
    tokens = oauth.finish(provider, state, request.args.get("code") or "", client())
    response = json_response(tokens)
    response.delete_cookie(OAUTH_COOKIE, path=f"/api/auth/oauth/{provider}")
    return response
