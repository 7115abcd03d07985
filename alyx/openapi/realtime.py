"""The OpenAPI entry of GET /api/realtime: a WebSocket upgrade, its JSON frames described (DESIGN.md §5)."""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx.openapi.components import ANY_OBJECT, INTEGER, OPTIONAL_TOKEN, STRING, errors, obj, query_param, ref

FRAMES = """\
A WebSocket (RFC 6455) carrying JSON text frames `{"id"?: string, "type": string, "payload"?: object}` both
ways; a reply carries the `id` of the frame it answers.

Server → client:
- `connected {client_id}`: first, on every connection.
- `auth {user}`: the reply to `auth`.
- `snapshot {subscription_id, docs, total, cursor}`: the reply to `subscribe` (same `id`).
- `delta {subscription_id, cursor, changes: {inserts: [doc], updates: [doc], deletes: [id]}}`: later changes
  the subscriber's list/view rules let them see.
- `unsubscribed {subscription_id}`, `pong`.
- `error {code, message, details?}`: a failed request (same `id`) or a problem with the connection.

Client → server:
- `auth {token}`: sign in (or connect with `Authorization: Bearer` or `?token=`).
- `subscribe {collection, filter?, sort?, limit?, since?}`: `filter` and `sort` as in the list API; `since` is
  a cursor from an earlier snapshot or delta, to resume without missing a change still in the change feed.
- `unsubscribe {subscription_id}`, `ping`.

The frame schemas are the components `RealtimeClientFrame` and `RealtimeServerFrame`."""


def realtime_schemas() -> dict[str, dict[str, Any]]:
    """The frames as component schemas (for generated clients; OpenAPI 3.0 has no WebSocket messages)."""
    frame_id = {**STRING, "description": "Set on a request; echoed on its reply"}
    changes = obj({"inserts": {"type": "array", "items": ANY_OBJECT},
                   "updates": {"type": "array", "items": ANY_OBJECT},
                   "deletes": {"type": "array", "items": STRING}}, ["inserts", "updates", "deletes"])
    return {
        "RealtimeClientFrame": obj({
            "id": frame_id, "type": {"type": "string", "enum": ["auth", "subscribe", "unsubscribe", "ping"]},
            "payload": obj({"token": STRING, "collection": STRING, "filter": STRING, "sort": STRING,
                            "limit": INTEGER, "since": INTEGER, "subscription_id": STRING})}, ["type"]),
        "RealtimeServerFrame": obj({
            "id": frame_id,
            "type": {"type": "string", "enum": ["connected", "auth", "snapshot", "delta", "unsubscribed", "pong",
                                                "error"]},
            "payload": obj({"client_id": STRING, "user": ANY_OBJECT, "subscription_id": STRING,
                            "docs": {"type": "array", "items": ANY_OBJECT}, "total": INTEGER, "cursor": INTEGER,
                            "changes": changes, "code": STRING, "message": STRING, "details": ANY_OBJECT})},
            ["type"]),
    }


def add_realtime_path(api: APISpec) -> None:
    """GET /api/realtime (alyx/blueprints/realtime.py)."""
    header = {"in": "header", "required": True}
    api.path(path="/api/realtime", operations={"get": {
        "tags": ["realtime"], "summary": "Realtime subscriptions (WebSocket upgrade)", "operationId": "realtime",
        "description": FRAMES, "security": OPTIONAL_TOKEN,
        "parameters": [
            {"name": "Upgrade", **header, "schema": {"type": "string", "enum": ["websocket"]}},
            {"name": "Connection", **header, "schema": {"type": "string", "enum": ["Upgrade"]}},
            {"name": "Sec-WebSocket-Key", **header, "schema": STRING},
            {"name": "Sec-WebSocket-Version", **header, "schema": {"type": "string", "enum": ["13"]}},
            query_param("token", STRING, "An access token, for clients that cannot set headers"),
        ],
        "responses": {"101": {"description": "Switching Protocols: the socket speaks the frames above",
                              "content": {"application/json": {"schema": ref("RealtimeServerFrame")}}},
                      **errors("400", "401", notes={"400": "Not a WebSocket upgrade request"})}}})

