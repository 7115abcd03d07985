"""/_admin/: the admin UI's files (static/admin/, plain ES modules) under a strict Content-Security-Policy.

The UI itself only speaks the public API (REST, realtime, admin endpoints); this blueprint serves files,
or, with ``ALYX_ADMIN_UI_DEV=<url>`` (``admin.ui_dev``), passes ``/_admin/*`` on to that dev server.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
from flask import Blueprint, Response, current_app, redirect, request, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

from alyx.blueprints import services
from alyx.errors import AlyxError

bp = Blueprint("admin_ui", __name__)

INDEX = "index.html"
# What of a browser's request reaches the dev server: never cookies or credentials.
FORWARDED = ("Accept", "Accept-Language", "If-None-Match", "If-Modified-Since", "User-Agent")
# What of the dev server's answer comes back (the body arrives decoded, the length is recomputed).
RETURNED = ("Content-Type", "Cache-Control", "ETag", "Last-Modified", "Location")
DEV_TIMEOUT_SECONDS = 10
DEV_MAX_BYTES = 64 * 1024 * 1024  # a dev server's answer larger than this is a 502 (it is read whole)


def admin_folder() -> Path:
    """static/admin/ of the app's static folder (alyx/resources.py found it: checkout or installed copy)."""
    return Path(current_app.static_folder or "") / "admin"


def content_security_policy(dev_origin: str | None = None) -> str:
    """Scripts and styles only from this origin (no inline code); the API and the realtime socket here
    (and, proxying a dev server, that server's origin for its scripts and hot-reload socket)."""
    host = request.host
    extra = ""
    if dev_origin:
        parts = urlsplit(dev_origin)
        extra = f" {parts.scheme}://{parts.netloc} ws://{parts.netloc}"
    return (f"default-src 'self'; script-src 'self'{extra}; style-src 'self'{extra}; img-src 'self' data: blob:; "
            f"connect-src 'self' ws://{host} wss://{host}{extra}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def with_policy(response: Response, dev_origin: str | None = None) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(dev_origin)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/_admin")
def admin_redirect() -> WerkzeugResponse:
    return redirect("/_admin/", 308)


@bp.get("/_admin/")
@bp.get("/_admin/<path:path>")
def admin_file(path: str = INDEX) -> Response:
    """A file of static/admin/; any other path is the page itself (the UI routes on the URL's #fragment)."""
    dev = services().config.admin_ui_dev
    if dev:
        return from_dev_server(dev.rstrip("/"))
    folder = admin_folder()
    if not (folder / path).is_file() or ".." in Path(path).parts:
        path = INDEX
    return with_policy(send_from_directory(folder, path))


def from_dev_server(base: str) -> Response:
    """The same path and query asked of the dev server (a 502 when it does not answer)."""
    # Dot segments (also percent-encoded: request.path is decoded) would leave /_admin/ on the dev server,
    # whose other routes may serve any file (Vite's /@fs/): the HTTP client resolves them before sending.
    if any(part in (".", "..") for part in request.path.replace("\\", "/").split("/")):
        raise AlyxError("not_found", "No such admin UI file.", 404)
    target = base + quote(request.path) + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
    try:
        with requests.get(target, headers=headers, timeout=DEV_TIMEOUT_SECONDS, allow_redirects=False,
                          stream=True) as answer:
            body = answer.raw.read(DEV_MAX_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise AlyxError("admin_ui_dev_unreachable", f"The admin UI dev server (admin.ui_dev = {base}) does not "
                        f"answer: {type(exc).__name__}. Start it, or unset ALYX_ADMIN_UI_DEV.", 502) from None
    if len(body) > DEV_MAX_BYTES:
        raise AlyxError("admin_ui_dev_too_large", f"The admin UI dev server's answer for {request.path} is larger "
                        f"than {DEV_MAX_BYTES} bytes.", 502)
    response = with_policy(Response(body, status=answer.status_code), base)
    for key in RETURNED:
        if key in answer.headers:
            response.headers[key] = answer.headers[key]
    return response
