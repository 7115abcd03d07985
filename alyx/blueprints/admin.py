"""/_admin/: the admin UI's files (static/admin/, plain ES modules) under a strict Content-Security-Policy.

The UI itself only speaks the public API (REST, realtime, admin endpoints); this blueprint serves files.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, redirect, request, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

bp = Blueprint("admin_ui", __name__)

INDEX = "index.html"


def admin_folder() -> Path:
    """static/admin/ of the app's static folder (alyx/resources.py found it: checkout or installed copy)."""
    return Path(current_app.static_folder or "") / "admin"


def content_security_policy() -> str:
    """Scripts and styles only from this origin (no inline code); the API and the realtime socket here."""
    host = request.host
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def with_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy()
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
    folder = admin_folder()
    if not (folder / path).is_file() or ".." in Path(path).parts:
        path = INDEX
    return with_policy(send_from_directory(folder, path))
