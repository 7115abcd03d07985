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


class RuntimeTimeout(Exception):
    """The runtime did not answer before the deadline."""


class RuntimeGone(Exception):
    """The runtime's socket closed or refused: the process exited or crashed."""


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
                body: bytes = b"", timeout: float = 10.0) -> RawResponse:
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
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "sandbox")
            conn.putheader("x-alyx-secret", self.secret)
            for k, v in headers or ():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            result = RawResponse(response.status, response.getheaders(), data)
        except TimeoutError as exc:
            conn.close()
            raise RuntimeTimeout(str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RuntimeGone(f"{type(exc).__name__}: {exc}") from None
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return result

    def wait_ready(self, deadline: float, alive: Any) -> None:
        """Poll /__rt/health until it answers; RuntimeGone if `alive()` turns false first."""
        delay = 0.002
        while True:
            try:
                if self.request("GET", "/__rt/health", timeout=max(0.05, deadline - time.monotonic())).status == 200:
                    return
            except (RuntimeGone, RuntimeTimeout):
                pass
            if not alive():
                raise RuntimeGone("the runtime exited during start")
            if time.monotonic() > deadline:
                raise RuntimeTimeout("the runtime did not become ready in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
