"""The realtime service of one process: the feed writer, the hub, clients, subscriptions and their limits.

Knows nothing of Flask or of WebSocket frames on the wire: a transport (alyx/realtime/websocket.py)
drives a `Client`.
"""
from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from alyx import query as q
from alyx.background import Loop
from alyx.collection import Collection
from alyx.config import Config
from alyx.db import Database
from alyx.errors import AlyxError, bad_request
from alyx.realtime.audience import RULE_OPERATIONS, Subscription, check_subscribable
from alyx.realtime.brokers import PostgresBroker, RedisBroker, open_broker
from alyx.realtime.client import Client
from alyx.realtime.doorbell import Doorbell
from alyx.realtime.feed import Change, ChangeFeed
from alyx.realtime.frames import frame
from alyx.realtime.hub import Hub
from alyx.records import Records
from alyx.rules import AccessRules, Principal


class Sessions(Protocol):
    """The auth service's session check (alyx/auth.py `AuthService.authenticate`, through its session cache)."""

    def authenticate(self, token: Any, max_age: float | None = None) -> tuple[Principal, str]: ...


SESSION_TICK = 0.5  # seconds between two passes of the session re-check over this worker's sockets


class Realtime:
    """Connections, authentication and subscriptions of one worker, over its feed and hub."""

    def __init__(self, config: Config, db: Database, records: Records, access: AccessRules,
                 sessions: Sessions | None = None) -> None:
        self.config = config
        self.db = db
        self.records = records
        self.access = access
        self.sessions = sessions
        # Logout, revocation, deletion and role changes reach open sockets within
        # auth.session_check_seconds: each pass accepts cached sessions only that much younger.
        self.session_loop = Loop("realtime-sessions", self.check_sessions)
        self.feed = ChangeFeed(db, config.realtime_feed_retention_seconds, config.realtime_feed_max_rows)
        self.broker = open_broker(config, db)
        self.doorbell: Doorbell | None = None
        self.clients: dict[str, Client] = {}
        self.node = secrets.token_hex(3)  # tells this worker's client ids apart from other workers'
        self._client_ids = itertools.count(1)
        if isinstance(self.broker, PostgresBroker):
            self.feed.notify_in_transaction = True
        elif isinstance(self.broker, RedisBroker):
            self.feed.on_commit.append(self.broker.publish)
        else:
            self.doorbell = Doorbell(config.database_display)
            self.feed.on_commit.append(self._committed_locally)
        self.hub = Hub(self.feed, config, access, self.broker, self.doorbell)

    def _committed_locally(self, change: Change) -> None:
        self.hub.poke()
        if self.doorbell is not None:
            self.doorbell.ring()

    # -- connections
    def connect(self, wake: Callable[[], None]) -> Client:
        """Register a new connection (AlyxError too_many_connections past the per-worker bound)."""
        if len(self.clients) >= self.config.realtime_max_connections:
            raise AlyxError("too_many_connections",
                            f"This server holds its maximum of {self.config.realtime_max_connections} "
                            "realtime connections; retry later.", 503)
        self.hub.ensure_started()
        if self.sessions is not None:
            self.session_loop.start()
        client = Client(self, f"{self.node}-{next(self._client_ids)}", wake)
        self.clients[client.id] = client
        return client

    def disconnect(self, client: Client) -> None:
        self.hub.detach_client(client)
        self.clients.pop(client.id, None)

    def end_subscriptions(self, client: Client) -> None:
        """Detach every subscription of a client that stays connected for now (a slow consumer)."""
        self.hub.detach_client(client)

    def authenticate(self, client: Client, principal: Principal | None, expires_at: float | None,
                     token: str | None = None) -> None:
        """Set who the client is (``token``: the access token that says so, whose session is re-checked);
        subscriptions made as someone else end (their rules no longer apply)."""
        if client.principal != principal and client.subscriptions:
            for sub in list(client.subscriptions.values()):
                self.unsubscribe(client, sub.id)
                client.push(frame("error", {"code": "subscription_closed", "subscription_id": sub.id,
                                            "message": "Signed in as someone else: subscribe again."}))
        client.principal = principal
        client.token_expires_at = expires_at
        client.token = token if principal is not None else None

    def check_sessions(self) -> float:
        """One pass over this worker's signed-in sockets (the step of `session_loop`): a session that ended
        (logout, revocation, the user deleted) makes the socket anonymous, and a changed user (role, email,
        verified) ends the subscriptions made under the old one; both with an error frame naming them.
        Returns the seconds to the next pass."""
        check = self.config.auth_session_check_seconds
        max_age = max(0.0, check - SESSION_TICK)
        for client in list(self.clients.values()) if self.clients else ():
            self.check_session(client, max_age)
        return SESSION_TICK if check > 0 else 1.0

    def check_session(self, client: Client, max_age: float | None = None) -> AlyxError | None:
        """Re-check one socket's session now (cached up to ``max_age`` seconds); see `check_sessions`.
        Returns the 401 when the session has ended."""
        token, principal = client.token, client.principal
        if self.sessions is None or token is None or principal is None or client.close_request is not None:
            return None
        try:
            current, _ = self.sessions.authenticate(token, max_age)
        except AlyxError as exc:
            if exc.status != 401 or client.token is not token:
                return None
            if exc.code == "token_expired":
                self.expire(client)
                return exc
            self._end_subscriptions(client, "session_revoked", "The session has ended (logged out, revoked or the "
                                                               "user was deleted): sign in again.")
            client.principal, client.token, client.token_expires_at = None, None, None
            return exc
        if current != principal and client.token is token:
            self._end_subscriptions(client, "session_changed", "Your account changed (role, email or verified): "
                                                               "subscribe again.")
            client.principal = current
        return None

    def _end_subscriptions(self, client: Client, code: str, message: str) -> None:
        ended = list(client.subscriptions)
        for sub_id in ended:
            self.unsubscribe(client, sub_id)
        client.push(frame("error", {"code": code, "subscription_ids": ended, "message": message}))

    def expire(self, client: Client) -> None:
        """The client's token expired: its subscriptions end with an error, the connection stays anonymous."""
        ended = list(client.subscriptions)
        for sub_id in ended:
            self.unsubscribe(client, sub_id)
        client.principal = None
        client.token_expires_at = None
        client.push(frame("error", {"code": "token_expired", "subscription_ids": ended,
                                    "message": "The access token expired: send a new auth frame, then subscribe "
                                               "again with since=<last cursor>."}))

    # -- subscriptions
    def subscribe(self, client: Client, payload: Any, request_id: Any = None) -> None:
        """Check, snapshot (or resume from `since`), then make live; replies are pushed to the client."""
        if not isinstance(payload, dict):
            raise bad_request("subscribe needs a payload object {collection, filter?, sort?, limit?, since?}.")
        name = payload.get("collection")
        if not isinstance(name, str) or not name:
            raise bad_request("subscribe needs a collection name.")
        if len(client.subscriptions) >= self.config.realtime_max_subscriptions:
            raise AlyxError("too_many_subscriptions", f"A connection may hold at most "
                            f"{self.config.realtime_max_subscriptions} subscriptions.", 429)
        coll = self.records.collection(name)  # 404 not_found for an unknown collection
        ended = self.check_session(client)  # a deleted user or ended session cannot subscribe (cached ≤ the promise)
        if ended is not None:
            raise ended
        check_subscribable(self.access, coll, client.principal)
        filter_text, since, args = payload.get("filter"), payload.get("since"), list_args(payload)
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise bad_request("since must be a cursor (a non-negative integer) from an earlier snapshot or delta.")
        lq = q.parse_list_query(coll.spec, args, self.records.default_per_page, self.records.max_per_page)
        audience = self.hub.audience_for(coll, client.principal, filter_text, q.filter_node(lq, coll.spec))
        sub = Subscription(client.next_subscription_id(), client, audience)
        reply: dict[str, Any]
        if since is not None:
            with self.db.connection():
                self.feed.check_since(since)
            start = since
            reply = {"subscription_id": sub.id, "docs": [], "total": None, "cursor": since, "resumed": True}
        else:
            reply, start = self._snapshot(coll, lq, client.principal, sub.id)
        client.subscriptions[sub.id] = sub
        client.push(frame("snapshot", reply, request_id))
        try:
            self.hub.attach(sub, start)
        except BaseException:
            client.subscriptions.pop(sub.id, None)
            self.hub.detach(sub)
            raise

    def unsubscribe(self, client: Client, sub_id: Any) -> None:
        sub = client.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if sub is None:
            raise AlyxError("not_found", f"No subscription {str(sub_id)[:40]!r} on this connection.", 404)
        self.hub.detach(sub)

    def _snapshot(self, coll: Collection, lq: q.ListQuery, principal: Principal | None, sub_id: str
                  ) -> tuple[dict[str, Any], int]:
        """The first page the subscription matches (the REST list query), and the feed cursor it is consistent with."""
        postgres = not self.db.is_sqlite
        # A read transaction (DEFERRED on SQLite: it must not take the write lock the database's
        # IMMEDIATE default would take); its first read fixes the snapshot both queries see.
        pw: Any = self.db.peewee
        with self.db.connection(), pw.atomic(**({} if postgres else {"lock_type": "DEFERRED"})):
            if postgres:
                pw.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor = self.feed.head()
            page = self.records.page(coll, lq, principal, None, RULE_OPERATIONS)
        docs = [coll.serialize(row) for row in page.rows]
        return {"subscription_id": sub_id, "docs": docs, "total": page.total, "cursor": cursor}, cursor

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self.clients), "position": self.hub.position,
                "audiences": len(self.hub.audiences), "frames_sent": self.hub.frames_sent,
                "batches": self.hub.batches}


def list_args(payload: dict[str, Any]) -> dict[str, str]:
    """A subscribe payload's `filter`, `sort` and `limit` as the query parameters of a REST list (400 if bad)."""
    args: dict[str, str] = {}
    for key in ("filter", "sort"):
        value = payload.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise bad_request(f"{key} must be a string.")
            args[key] = value
    limit = payload.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad_request("limit must be a positive integer.")
        args["perPage"] = str(limit)
    return args
