"""HTTP plumbing shared by the blueprints: JSON responses, JSON bodies, and the one error handler."""
from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from alyx.db import unavailable
from alyx.errors import AlyxError

log = logging.getLogger("alyx.http")

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
              422: "validation_failed", 429: "rate_limited", 503: "unavailable"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json", headers=headers)


def request_body() -> bytes:
    """The raw request body, whole: 413 ``too_large`` past ``server.max_body_bytes``, chunked or not.

    werkzeug refuses a Content-Length over the limit, but reads a chunked body only up to the limit
    and hands back that prefix as if it were the body; this reads one byte more to tell."""
    limit = request.max_content_length
    environ = request.environ
    if limit is None or request.content_length is not None or not environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)  # no stream to bound (werkzeug's safe fallback is b"")
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
    raw = request_body()
    if not raw.strip():
        raise AlyxError("invalid_json", "The request body is empty; expected a JSON object.", 400)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AlyxError("invalid_json", f"The request body is not valid JSON: {exc}.", 400) from None


def install_error_handlers(app: Flask) -> None:
    """Every error leaves as {"error": {code, message, details}}; a 500 is logged with its traceback."""

    @app.errorhandler(AlyxError)
    def handle_alyx_error(exc: AlyxError) -> Response:
        return json_response(exc.to_dict(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request body is larger than the limit of {limit} bytes."
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        error = AlyxError(HTTP_CODES.get(status, "http_error"), message, status)
        return json_response(error.to_dict(), status, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        fault = unavailable(exc)
        if fault is not None:  # the database cannot serve now: 503 + Retry-After, logged without a traceback
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            return json_response(fault.to_dict(), fault.status, fault.headers)
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = AlyxError("internal_error", "An unexpected error occurred; it has been logged.", 500)
        return json_response(error.to_dict(), 500)
