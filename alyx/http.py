"""HTTP plumbing shared by the blueprints: JSON responses, JSON bodies, and the one error handler."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing.exceptions import WebsocketMismatch
from werkzeug.wsgi import get_content_length, get_input_stream

from alyx.db import unavailable
from alyx.errors import AlyxError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("alyx.http")

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 414: "uri_too_long",
              415: "unsupported_media_type", 417: "expectation_failed", 422: "validation_failed",
              429: "rate_limited", 431: "headers_too_large", 503: "unavailable"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json", headers=headers)


def request_body() -> bytes:
    """The raw request body, whole: 413 ``too_large`` past ``server.max_body_bytes``, chunked or not."""
    return read_body(request.environ, request.max_content_length)


def read_body(environ: WSGIEnvironment, limit: int | None) -> bytes:
    """The raw body of a WSGI request, read as werkzeug's ``get_data`` reads it, bounded by ``limit``.

    werkzeug refuses a Content-Length over the limit, but reads a chunked body only up to the limit
    and hands back that prefix as if it were the body; this reads one byte more to tell. A body of
    known length from a server that ends the stream itself (gunicorn) is read in one call, as
    werkzeug's stream wrapper would read it in several."""
    length = get_content_length(environ)
    if length is not None and environ.get("wsgi.input_terminated"):
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(length) if length else b""
    if limit is None or length is not None or not environ.get("wsgi.input_terminated"):
        return get_input_stream(environ, max_content_length=limit).read()  # = request.get_data(cache=False)
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


def json_body() -> Any:
    """The request body as JSON: 415 when it is not JSON, 400 when it does not parse."""
    if request.mimetype != "application/json":
        raise AlyxError("unsupported_media_type", "The request body must be JSON (Content-Type: application/json).",
                        415)
    return parse_json(request_body())


def parse_json(raw: bytes) -> Any:
    """A JSON request body → its value: 400 ``invalid_json`` when it is empty or does not parse."""
    if not raw.strip():
        raise AlyxError("invalid_json", "The request body is empty; expected a JSON object.", 400)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AlyxError("invalid_json", f"The request body is not valid JSON: {exc}.", 400) from None


def error_reply(exc: BaseException, method: str, path: str, max_body: int | None
                ) -> tuple[dict[str, Any], int, dict[str, str] | None]:
    """Any exception of a request → (the DESIGN.md error body, status, headers): the one place errors
    are shaped. AlyxError as it says; werkzeug's HTTP errors with their status (413 names the limit,
    405 the allowed methods); a database fault as a 503 with Retry-After; anything else is a bug,
    logged with its traceback, and a 500 that says nothing of it."""
    if isinstance(exc, AlyxError):
        return exc.to_dict(), exc.status, exc.headers
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"The request body is larger than the limit of {max_body} bytes."
        elif isinstance(exc, WebsocketMismatch):
            message = "This URL is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)."
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return AlyxError(HTTP_CODES.get(status, "http_error"), message, status).to_dict(), status, headers
    fault = unavailable(exc)
    if fault is not None:  # the database cannot serve now: 503 + Retry-After, logged without a traceback
        log.warning("database unavailable on %s %s: %s", method, path, exc)
        return fault.to_dict(), fault.status, fault.headers
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return AlyxError("internal_error", "An unexpected error occurred; it has been logged.", 500).to_dict(), 500, None


def install_error_handlers(app: Flask) -> None:
    """Every error leaves as {"error": {code, message, details}} (``error_reply``)."""

    @app.errorhandler(Exception)
    def handle_any(exc: Exception) -> Response:
        body, status, headers = error_reply(exc, request.method, request.path, app.config.get("MAX_CONTENT_LENGTH"))
        return json_response(body, status, headers)


def protocol_error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response for a request the server could not parse (a request line or headers
    too long, a bad header or chunk): the DESIGN.md error shape instead of gunicorn's HTML page.
    ``gunicorn.conf.py`` installs it as gunicorn's ``util.write_error``; the connection is closed."""
    text = f"{reason}: {message}" if message else f"{reason}."
    body = orjson.dumps(AlyxError(HTTP_CODES.get(status, "bad_request"), text, status).to_dict())
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body
