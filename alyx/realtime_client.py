"""A Python client for GET /api/realtime that reconnects and resumes with `since` (needs `websockets`).

    with RealtimeClient("ws://127.0.0.1:8080/api/realtime") as rt:
        sub = rt.subscribe("posts", filter='status == "published"')
        for kind, value in sub.events(timeout=30):
            ...  # ("snapshot", [docs]) | ("insert" | "update", doc) | ("delete", id)

`sub.docs` holds the current records (id → doc), `sub.cursor` the last cursor received.
"""
from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class Subscription:
    """One live query; survives reconnects (it is re-sent with `since`)."""

    def __init__(self, client: RealtimeClient, collection: str, options: dict[str, Any]) -> None:
        self.client = client
        self.collection = collection
        self.options = options
        self.cursor: int | None = None
        self.docs: dict[str, dict[str, Any]] = {}
        self.server_id: str | None = None
        self.errors: list[dict[str, Any]] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.closed = False

    def events(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Yield events as they arrive; stop after `timeout` seconds without one (or when closed)."""
        while not self.closed:
            try:
                yield self._events.get(timeout=timeout)
            except queue.Empty:
                return

    def next_event(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next event (queue.Empty after `timeout`)."""
        return self._events.get(timeout=timeout)

    def close(self) -> None:
        self.closed = True
        self.client._unsubscribe(self)

    # -- called by the client's reader thread
    def _payload(self) -> dict[str, Any]:
        payload = {"collection": self.collection, **self.options}
        if self.cursor is not None:
            payload["since"] = self.cursor
        return payload

    def _snapshot(self, payload: dict[str, Any]) -> None:
        self.server_id = payload["subscription_id"]
        self.cursor = payload["cursor"]
        if not payload.get("resumed"):
            self.docs = {doc["id"]: doc for doc in payload["docs"]}
            self._events.put(("snapshot", payload["docs"]))

    def _delta(self, payload: dict[str, Any]) -> None:
        changes = payload["changes"]
        for doc in changes.get("inserts", ()):
            self.docs[doc["id"]] = doc
            self._events.put(("insert", doc))
        for doc in changes.get("updates", ()):
            self.docs[doc["id"]] = doc
            self._events.put(("update", doc))
        for rid in changes.get("deletes", ()):
            self.docs.pop(rid, None)
            self._events.put(("delete", rid))
        self.cursor = payload["cursor"]


class RealtimeClient:
    """Holds one WebSocket, reconnecting with exponential backoff, and routes frames to subscriptions."""

    def __init__(self, url: str, token: str | Callable[[], str | None] | None = None,
                 max_backoff: float = 10.0, open_timeout: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.subscriptions: list[Subscription] = []
        self.connections = 0  # how many times a connection was opened
        self._pending: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._ws: Any = None
        self._closed = False
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="alyx-realtime-client")

    def __enter__(self) -> RealtimeClient:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self._connected.wait(self.open_timeout)

    def close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None:
            ws.close()
        self._thread.join(timeout=5)

    def subscribe(self, collection: str, filter: str | None = None, sort: str | None = None,
                  limit: int | None = None) -> Subscription:
        options = {k: v for k, v in (("filter", filter), ("sort", sort), ("limit", limit)) if v is not None}
        sub = Subscription(self, collection, options)
        with self._lock:
            self.subscriptions.append(sub)
            self._send_subscribe(sub)
        return sub

    def drop_connection(self) -> None:
        """Cut the current connection without a close handshake (tests: a network failure)."""
        import socket

        ws = self._ws
        if ws is not None:
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- internals
    def _token(self) -> str | None:
        return self.token() if callable(self.token) else self.token

    def _send(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            try:
                ws.send(json.dumps(frame))
            except Exception:  # noqa: BLE001 - the reader thread notices and reconnects
                pass

    def _send_subscribe(self, sub: Subscription) -> None:
        request_id = f"sub{next(self._ids)}"
        self._pending[request_id] = sub
        self._send({"id": request_id, "type": "subscribe", "payload": sub._payload()})

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self.subscriptions:
                self.subscriptions.remove(sub)
            if sub.server_id:
                self._send({"type": "unsubscribe", "payload": {"subscription_id": sub.server_id}})

    def _run(self) -> None:
        from websockets.sync.client import connect

        backoff = 0.1
        while not self._closed:
            try:
                token = self._token()
                headers = {"Authorization": f"Bearer {token}"} if token else None
                with connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                             compression=None) as ws:
                    hello = json.loads(ws.recv(timeout=self.open_timeout))
                    if hello.get("type") != "connected":
                        raise ConnectionError(f"unexpected first frame {hello!r}")
                    with self._lock:
                        self._ws = ws
                        self.connections += 1
                        self._pending.clear()
                        for sub in self.subscriptions:
                            sub.server_id = None
                            self._send_subscribe(sub)
                    self._connected.set()
                    backoff = 0.1
                    for raw in ws:
                        self._on_frame(json.loads(raw))
            except Exception:  # noqa: BLE001 - any failure: back off and reconnect
                pass
            finally:
                self._ws = None
            if not self._closed:
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        request_id: Any  # the server echoes whatever id the request carried
        kind, payload, request_id = frame.get("type"), frame.get("payload") or {}, frame.get("id")
        if kind == "snapshot":
            sub = self._pending.pop(request_id, None)
            if sub is not None and not sub.closed:
                sub._snapshot(payload)
        elif kind == "delta":
            for sub in list(self.subscriptions):
                if sub.server_id == payload.get("subscription_id"):
                    sub._delta(payload)
        elif kind == "error":
            sub = self._pending.pop(request_id, None) if request_id is not None else None
            if sub is None:
                ended = [c for c in self.subscriptions if c.server_id in payload.get("subscription_ids", ())]
                if payload.get("code") == "token_expired":
                    # Sign in again (a callable token may return a refreshed one) and resume from the cursors.
                    token = self._token()
                    with self._lock:
                        if token:
                            self._send({"id": "auth", "type": "auth", "payload": {"token": token}})
                        for candidate in ended:
                            candidate.server_id = None
                            self._send_subscribe(candidate)
                for candidate in ended:
                    candidate._events.put(("error", payload))
                return
            if payload.get("code") == "cursor_expired":
                with self._lock:
                    sub.cursor = None  # take a fresh snapshot
                    self._send_subscribe(sub)
            else:
                sub.errors.append(payload)
                sub._events.put(("error", payload))
