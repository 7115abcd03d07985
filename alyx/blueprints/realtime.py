"""GET /api/realtime: the WebSocket route (flask-sock); the session itself is alyx/realtime/websocket.py."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request
from flask_sock import Sock

from alyx.blueprints import services
from alyx.errors import bad_request
from alyx.realtime import serve

bp = Blueprint("realtime", __name__)
sock = Sock()


def register_realtime(app: Flask) -> None:
    """Register the WebSocket route with the frame size limit from the config."""
    config = app.extensions["alyx"].config
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": config.realtime_max_frame_bytes}
    app.register_blueprint(bp)


@bp.before_request
def _websocket_handshake_only() -> None:
    """Refuse a WebSocket handshake without its key or version with a 400 that says so (flask-sock's
    handshake raises on them, which would be a 500)."""
    headers = request.headers  # a request without Upgrade: websocket never gets here (alyx.http, routing)
    if not headers.get("Sec-WebSocket-Key") or headers.get("Sec-WebSocket-Version") != "13":
        raise bad_request("The WebSocket handshake needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13.")
    # permessage-deflate keeps a zlib context per socket (memory) and compresses each frame per
    # subscriber (CPU); fan-out frames are small JSON, so Alyx does not negotiate it.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _token_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.args.get("token") or None


def realtime_socket(ws: Any) -> None:
    svc = services()
    if svc.realtime is None:
        raise RuntimeError("the realtime service is not built")
    serve(svc.realtime, ws, _token_from_request(), svc.auth)


sock.route("/api/realtime", bp=bp)(realtime_socket)  # flask-sock is untyped: registered without a decorator
