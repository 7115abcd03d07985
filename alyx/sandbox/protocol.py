"""The server side of the runtime protocol: HTTP/1.1 keep-alive over one sandbox's Unix socket.

A generic piece: it knows sockets, HTTP and the ``x-alyx-*`` headers, nothing of Alyx's models.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes

# What may stay as it is in a request target: printable ASCII but space (everything else is %XX).
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# What a path segment keeps unencoded on the runtime protocol (RFC 3986 pchar less "%", plus "/").
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


class RuntimeTimeout(Exception):
    """The runtime did not answer before the deadline."""


class RuntimeGone(Exception):
    """The runtime's socket closed or refused: the process exited or crashed."""


class ResponseTooLarge(Exception):
    """The runtime's answer is longer than the cap (the connection is dropped, the runtime is fine)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is longer than {limit} bytes")
        self.limit = limit


class LoadError(Exception):
    """The function's code failed to load (syntax or compile error, missing handler...)."""

    def __init__(self, message: str, details: dict[str, Any], stdout: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.stdout = stdout
        self.stderr = stderr


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("sandbox", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request_target(path: str, query: bytes = b"") -> str:
    """The request target of an invocation: the decoded ``path`` percent-encoded (UTF-8) once, the raw
    query kept (only bytes that cannot travel are encoded). The shims decode the path once."""
    target = quote(path, safe=_PATH_SAFE)
    if query:
        target += "?" + quote_from_bytes(query, safe=_TARGET_SAFE)
    return target


def wire_target(target: str) -> str:
    """A target that http.client can send: whatever is not printable ASCII (non-ASCII, spaces, controls)
    percent-encoded; what is already a valid target is unchanged."""
    return quote(target, safe=_TARGET_SAFE)


def encode_context(context: dict[str, Any]) -> str:
    """The x-alyx-context header: base64 of the JSON {auth, input, trigger}."""
    return base64.b64encode(json.dumps(context, default=str).encode()).decode()


class RuntimeClient:
    """Keep-alive HTTP client for one runtime socket; one connection per concurrent call."""

    def __init__(self, socket_path: str, secret: str) -> None:
        self.socket_path = socket_path
        self.secret = secret
        self._idle: list[_UnixConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                body: bytes = b"", timeout: float = 10.0, max_body: int | None = None) -> RawResponse:
        """One request; ``max_body`` caps the answer's body (ResponseTooLarge past it, read no further)."""
        timeout = max(timeout, 0.001)
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _UnixConnection(self.socket_path, timeout)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            else:
                conn.timeout = timeout
            conn.putrequest(method, wire_target(target), skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "sandbox")
            conn.putheader("x-alyx-secret", self.secret)
            for k, v in headers or ():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            if max_body is not None and response.length is not None and response.length > max_body:
                raise ResponseTooLarge(max_body)
            data = response.read() if max_body is None else response.read(max_body + 1)
            if max_body is not None and len(data) > max_body:
                raise ResponseTooLarge(max_body)
            result = RawResponse(response.status, response.getheaders(), data)
        except TimeoutError as exc:
            conn.close()
            raise RuntimeTimeout(str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RuntimeGone(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            conn.close()  # whatever failed, this connection is in an unknown state: never reuse it
            raise
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return result

    def wait_ready(self, deadline: float, alive: Any) -> dict[str, Any]:
        """Poll /__rt/health until it answers (its JSON); RuntimeGone if `alive()` turns false first.

        Polls are cheap (a failed connect), so they come often: a runtime is seen within ~5 ms of
        listening. A socket the server bound itself answers the first poll (the call queues)."""
        delay = 0.0005
        while True:
            try:
                response = self.request("GET", "/__rt/health", timeout=max(0.05, deadline - time.monotonic()))
                if response.status == 200:
                    health = response.json()
                    return health if isinstance(health, dict) else {}
            except (RuntimeGone, RuntimeTimeout):
                pass
            if not alive():
                raise RuntimeGone("the runtime exited during start")
            if time.monotonic() > deadline:
                raise RuntimeTimeout("the runtime did not become ready in time")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
