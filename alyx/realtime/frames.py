"""The JSON frames of the realtime channel (DESIGN.md §5) and the close codes sent with them."""
from __future__ import annotations

from typing import Any

import orjson

from alyx.errors import AlyxError

# Close codes sent to clients (RFC 6455 and its registry).
CLOSE_TOO_MANY_CONNECTIONS = 1013  # try again later
CLOSE_SLOW_CONSUMER = 1008  # policy violation: the send queue went over its bound
CLOSE_HEARTBEAT_TIMEOUT = 1001  # going away: no pong to the last ping


def frame(type_: str, payload: dict[str, Any] | None = None, request_id: Any = None) -> bytes:
    """One JSON frame {"id"?, "type", "payload"?}."""
    out: dict[str, Any] = {}
    if request_id is not None:
        out["id"] = request_id
    out["type"] = type_
    if payload is not None:
        out["payload"] = payload
    return orjson.dumps(out)


def error_frame(exc: AlyxError, request_id: Any = None) -> bytes:
    """An `error {code, message, details?}` frame for a failure."""
    payload: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        payload["details"] = exc.details
    return frame("error", payload, request_id)


def delta_frame(sub_id: str, cursor: int, changes_json: bytes) -> bytes:
    """A `delta` frame around changes already encoded once for every subscriber that shares them."""
    return b"".join((b'{"type":"delta","payload":{"subscription_id":', orjson.dumps(sub_id), b',"cursor":',
                     str(cursor).encode(), b',"changes":', changes_json, b"}}"))
