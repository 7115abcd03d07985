"""The Unix socket through which a function calls back into the REST API, as its caller.

Sandboxes have no network; the manager mounts this socket into each of them. A call carries an
opaque token issued for one invocation (valid until it ends) that stands for the invocation's
caller: the API then sees exactly that principal (or an anonymous one), never more.
"""
from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from alyx.background import spawn
from alyx.rules import Principal

log = logging.getLogger("alyx.functions")

TOKEN_HEADER = "HTTP_X_ALYX_CALLBACK_TOKEN"
ENVIRON_KEY = "alyx.callback_principal"  # set only by this server: TCP clients cannot set environ keys


class CallbackTokens:
    """Opaque per-invocation tokens → the caller they stand for."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()

    def issue(self, principal: Principal | None, ttl: float) -> str:
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (principal, now + ttl)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def lookup(self, token: str | None) -> tuple[bool, Principal | None]:
        with self._lock:
            entry = self._tokens.get(token or "")
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]


class CallbackServer:
    """Serves a WSGI app on `<dir>/api.sock` in a background thread (a greenlet under gevent)."""

    def __init__(self, wsgi_app: Any, tokens: CallbackTokens) -> None:
        self.wsgi_app = wsgi_app
        self.tokens = tokens
        self.dir = Path(tempfile.mkdtemp(prefix="alyx-api-"))
        self.dir.chmod(0o755)
        self.socket_path = self.dir / "api.sock"
        self._server: Any = None

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        found, principal = self.tokens.lookup(environ.pop(TOKEN_HEADER, None))
        if not found:
            start_response("401 UNAUTHORIZED", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "unauthorized", "message": "The callback token is missing or has expired.",'
                    b' "details": {}}}']
        environ.pop("HTTP_AUTHORIZATION", None)  # a callback acts as the invocation's caller, nobody else
        environ.pop("HTTP_COOKIE", None)
        environ[ENVIRON_KEY] = principal
        environ.setdefault("REMOTE_ADDR", "127.0.0.1")
        if not environ.get("REMOTE_ADDR"):
            environ["REMOTE_ADDR"] = "127.0.0.1"
        return self.wsgi_app(environ, start_response)

    def start(self) -> Path:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # the execution log and the app's own logging cover these calls

        self._server = make_server(f"unix://{self.socket_path}", 0, self._app, threaded=True,
                                   request_handler=QuietHandler)
        self.socket_path.chmod(0o666)  # sandboxes run as uid 65534
        # A short poll interval: shutdown() waits for the loop to look at its flag (0.5 s by default).
        spawn(self._server.serve_forever, 0.05, name="alyx-functions-callback")
        return self.dir

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)
