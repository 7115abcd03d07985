"""The WebSocket session of one client: frames in, the realtime service, frames out (over simple_websocket).

One greenlet per connection reads frames and writes every outgoing frame, so writes to a socket
never interleave; the hub only queues frames (bounded) and wakes this greenlet. Outgoing text
frames are framed here (unmasked, uncompressed) and written in one call.
"""
from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
from simple_websocket import ConnectionClosed
from wsproto.events import CloseConnection, Ping

from alyx.db import unavailable
from alyx.errors import AlyxError
from alyx.realtime.client import Client
from alyx.realtime.frames import CLOSE_HEARTBEAT_TIMEOUT, CLOSE_TOO_MANY_CONNECTIONS, error_frame, frame
from alyx.realtime.service import Realtime
from alyx.rules import Principal

log = logging.getLogger("alyx.realtime")

CLOSE_GRACE_SECONDS = 5.0  # a slow consumer gets this long to take its close frame before the socket is cut
WRITE_SLICE_SECONDS = 0.5  # a blocked write looks at its deadline (which a full send queue brings forward) this often
SEND_BATCH = 64  # queued frames written per socket write


class TokenVerifier(Protocol):
    """The auth service's verified token path (alyx/auth.py `AuthService`)."""

    def decode(self, token: Any) -> dict[str, Any]: ...

    def principal_from_token(self, token: Any) -> Principal: ...


def authenticate_token(verifier: TokenVerifier, token: Any) -> tuple[Principal | None, float | None]:
    """Token → (principal, expiry as epoch seconds); (None, None) for no token; AlyxError 401 for a bad one."""
    if token is None or token == "":
        return None, None
    if not isinstance(token, str):
        raise AlyxError("unauthorized", "token must be a string.", 401)
    principal = verifier.principal_from_token(token)
    exp = verifier.decode(token).get("exp")  # verified: our key, our issuer, not expired
    return principal, float(exp) if isinstance(exp, (int, float)) else None


class SerialSocket:
    """The TCP socket with every write serialised (the reader thread answers pings on it too) and bounded
    in time: a write that cannot finish within `write_timeout` seconds, or by `cut_at` (a monotonic time
    set when the client must go), cuts the socket and raises OSError, so a peer that stops reading never
    holds the connection's greenlet (or its queued frames) for longer."""

    def __init__(self, raw: Any, write_timeout: float) -> None:
        self.raw = raw
        self.write_timeout = write_timeout
        self.cut_at: float | None = None
        self.cut = False
        self.lock = threading.Lock()
        self.unsent = b""  # the tail of a frame a non-blocking write could not finish: goes out first
        self.gevent = type(raw).__module__.startswith("gevent")  # send(data, flags, timeout)

    def send(self, data: bytes) -> int:
        with self.lock:
            if self.unsent:
                data, self.unsent = self.unsent + data, b""
            self._write(data)
        return len(data)

    sendall = send

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        give_up = time.monotonic() + self.write_timeout
        while view:
            if self.cut:
                raise BrokenPipeError("the connection was cut")
            limit = give_up if self.cut_at is None else min(give_up, self.cut_at)
            left = limit - time.monotonic()
            if left <= 0:
                self.abort()
                raise TimeoutError("the peer did not read in time: the connection was cut")
            view = view[self._send_some(view, min(left, WRITE_SLICE_SECONDS)):]

    def _send_some(self, view: memoryview, timeout: float) -> int:
        """Bytes written within `timeout` (0 when none could be)."""
        try:  # select is gevent's once patched; gevent's own send(timeout=) waits without a bound
            _, writable, _ = select.select([], [self.raw], [], timeout)
            if not writable:
                return 0
            if self.gevent:  # timeout 0.0: raise instead of waiting
                return int(self.raw.send(view, 0, 0.0))
            return int(self.raw.send(view, socket.MSG_DONTWAIT))
        except (TimeoutError, BlockingIOError, InterruptedError):
            return 0

    def abort(self) -> None:
        """Cut the connection now: no close frame, the kernel's buffers are dropped (RST on close)."""
        self.cut = True
        try:
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def text_frame(data: bytes) -> bytes:
    """One server-to-client text frame (FIN, opcode 1, unmasked) around UTF-8 bytes."""
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + data


class Connection:
    """The socket side of one client (a simple_websocket `Server`): sending frames, heartbeats, closing."""

    def __init__(self, ws: Any, write_timeout: float) -> None:
        self.ws = ws
        self.sock = SerialSocket(ws.sock, write_timeout)
        self.nonblocking = self.sock.gevent  # send(data, flags, timeout): the hub may write at once
        ws.sock = self.sock

    def send(self, data: bytes) -> None:
        self.send_many((data,))

    def send_many(self, frames: Iterable[bytes]) -> None:
        """Text frames (UTF-8 JSON), framed here — unmasked, uncompressed — and written in one call."""
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        out = bytearray()
        for data in frames:
            out += text_frame(data)
        self.sock.send(bytes(out))

    def send_now(self, data: bytes) -> bool:
        """Write one frame without blocking, from the hub's greenlet: False when it must be queued instead.

        Only under gevent (one OS thread, so nothing runs between the checks and the write); a
        partial write leaves the rest in `sock.unsent`, which the next write sends first."""
        sock = self.sock
        if sock.unsent or sock.cut or not self.ws.connected or sock.lock.locked():
            return False
        framed = text_frame(data)
        try:
            sent = sock.raw.send(framed, 0, 0.0)
        except OSError:
            return False
        if sent < len(framed):
            sock.unsent = framed[sent:]
            self.ws.event.set()
        return True

    def ping(self) -> None:
        self.ws.pong_received = False
        self.sock.send(self.ws.ws.send(Ping()))

    def next_message(self, timeout: float) -> str | bytes | None:
        """The next message, or None when woken (frames to send) or on timeout."""
        ws = self.ws
        if not ws.input_buffer:
            if not ws.connected:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            ws.event.wait(timeout=max(timeout, 0))
            ws.event.clear()
        if ws.input_buffer:
            message: str | bytes = ws.input_buffer.pop(0)
            return message
        if not ws.connected:
            raise ConnectionClosed(ws.close_reason, ws.close_message)
        return None

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; cut the socket if the peer does not take it within CLOSE_GRACE_SECONDS."""
        if not self.ws.connected:
            return
        self.cut_soon()
        try:
            self.sock.send(self.ws.ws.send(CloseConnection(code, reason)))
        except OSError:
            pass
        self.ws.connected = False

    def cut_soon(self) -> None:
        """A write still blocked CLOSE_GRACE_SECONDS from now (the one in flight, or the close frame) cuts
        the socket: called when the client must go (its send queue went over the bound)."""
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        self.sock.cut_at = deadline if self.sock.cut_at is None else min(self.sock.cut_at, deadline)


def serve(rt: Realtime, ws: Any, token: str | None, verifier: TokenVerifier) -> None:
    """Run one WebSocket session to its end: `connected`, then frames both ways until it closes."""
    if not rt.db.peewee.is_closed():
        rt.db.peewee.close()  # no pooled connection held while the socket lives (alyx/app.py skips it too)
    conn = Connection(ws, rt.config.realtime_write_timeout_seconds)
    try:
        client = rt.connect(wake=ws.event.set)
    except AlyxError as exc:
        conn.send(error_frame(exc))
        conn.close(CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
        return
    if conn.nonblocking:
        client.send_now = conn.send_now
    client.on_overflow = conn.cut_soon
    try:
        Session(rt, client, conn, verifier).run(token)
    except (ConnectionClosed, OSError):
        pass
    finally:
        rt.disconnect(client)


class Session:
    """The loop of one connection: drain the client's queue, heartbeats, token expiry, incoming frames."""

    def __init__(self, rt: Realtime, client: Client, conn: Connection, verifier: TokenVerifier) -> None:
        self.rt, self.client, self.conn, self.verifier = rt, client, conn, verifier

    def run(self, token: str | None) -> None:
        rt, client, conn = self.rt, self.client, self.conn
        conn.send(frame("connected", {"client_id": client.id}))
        try:
            rt.authenticate(client, *authenticate_token(self.verifier, token), token=token)
        except AlyxError as exc:
            client.push(error_frame(exc))
        heartbeat = max(rt.config.realtime_heartbeat_seconds, 1)
        next_ping = time.monotonic() + heartbeat
        while True:
            if conn.sock.unsent and not client.outbox:
                conn.send_many(())
            if client.outbox:
                batch = [client.outbox.popleft() for _ in range(min(len(client.outbox), SEND_BATCH))]
                conn.send_many(batch)
                continue
            if client.close_request is not None:
                conn.close(*client.close_request)
                return
            now = time.monotonic()
            if client.token_expires_at is not None and time.time() >= client.token_expires_at:
                rt.expire(client)
                continue
            if now >= next_ping:
                if not conn.ws.pong_received:
                    conn.close(CLOSE_HEARTBEAT_TIMEOUT, "no pong to the last ping")
                    return
                conn.ping()
                next_ping = now + heartbeat
            wait = next_ping - now
            if client.token_expires_at is not None:
                wait = min(wait, client.token_expires_at - time.time())
            message = conn.next_message(wait)
            if message is not None:
                self.handle(message)

    def handle(self, message: str | bytes) -> None:
        """One client frame → replies pushed to the client; bad input is an error frame, never an exception."""
        rt, client = self.rt, self.client
        request_id = None
        try:
            try:
                data = orjson.loads(message)
            except orjson.JSONDecodeError:
                raise AlyxError("invalid_json", "The frame is not valid JSON.") from None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise AlyxError("invalid_frame", 'A frame is a JSON object {"id"?, "type", "payload"?}.')
            request_id = data.get("id")
            if request_id is not None and (not isinstance(request_id, (str, int)) or isinstance(request_id, bool)):
                request_id = None
                raise AlyxError("invalid_frame", "id must be a string or an integer.")
            kind, payload = data["type"], data.get("payload")
            if payload is not None and not isinstance(payload, dict):
                raise AlyxError("invalid_frame", "payload must be a JSON object.")
            payload = payload or {}
            if kind == "ping":
                client.push(frame("pong", None, request_id))
            elif kind == "auth":
                principal, expires_at = authenticate_token(self.verifier, payload.get("token"))
                rt.authenticate(client, principal, expires_at, token=payload.get("token"))
                client.push(frame("auth", {"user": principal.as_dict() if principal else None}, request_id))
            elif kind == "subscribe":
                rt.subscribe(client, payload, request_id)
            elif kind == "unsubscribe":
                rt.unsubscribe(client, payload.get("subscription_id"))
                client.push(frame("unsubscribed", {"subscription_id": payload.get("subscription_id")}, request_id))
            else:
                raise AlyxError("unknown_type", f"Unknown frame type {kind[:40]!r} "
                                "(expected auth, subscribe, unsubscribe or ping).")
        except AlyxError as exc:
            client.push(error_frame(exc, request_id))
        except Exception as exc:
            fault = unavailable(exc)  # the database cannot serve now: the client may retry the frame
            if fault is None:
                log.exception("realtime: unexpected error handling a frame")
                fault = AlyxError("internal_error", "An unexpected error occurred; it has been logged.", 500)
            client.push(error_frame(fault, request_id))
