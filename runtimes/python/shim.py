"""The Alyx Python runtime shim: serves the runtime protocol (DESIGN.md §6) over a Unix socket.

Loaded once per sandbox; user code is loaded by POST /__rt/init, then every other request is an
invocation of that code. Standard library only: it runs inside minimal images.
"""
import base64
import builtins
import contextvars
import datetime
import hmac
import http.client
import importlib.abc
import importlib.util
import json
import os
import socket
import socketserver
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

SOCKET_PATH = os.environ.pop("ALYX_SOCKET", "/run/alyx/rt.sock")


def _secret():
    """The per-sandbox secret: from the file the server wrote (never argv, never the environment)."""
    with open(os.environ.pop("ALYX_SECRET_FILE"), "rb") as f:
        secret = f.read().strip()
    if not secret:
        sys.exit("alyx shim: the secret file is empty")
    return secret


SECRET = _secret()
API_SOCKET = os.environ.pop("ALYX_API_SOCKET", "")
LIFELINE = os.environ.pop("ALYX_LIFELINE", "")
END_MARK = "\x1eALYX-END {}\x1e\n"
STATE = {"handler": None, "env": {}, "function": None}


class AlyxApiError(Exception):
    """An error answer of the Alyx API: .status and .error ({code, message, details})."""

    def __init__(self, status, error):
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.error = error


class _UnixHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(API_SOCKET)


def _json_default(value):
    """Dates leave as RFC 3339 UTC (naive ones are taken as UTC), as the server stores and compares them."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def _dumps(value):
    return json.dumps(value, default=_json_default)


def _query_value(value):
    """A list parameter as text: fields/expand lists joined by commas, filter objects as JSON, dates RFC 3339."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return _dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return _json_default(value)
    return value


class Collection:
    """One collection through the REST API: list/get/create/update/delete, and bulk by filter."""

    def __init__(self, client, name):
        self.client, self.path = client, f"/api/collections/{quote(name, safe='')}"

    def list(self, params=None, **query):
        """One page: {items, page, perPage, totalItems, totalPages}; ``filter`` may be a filter object."""
        query = {key: _query_value(value) for key, value in {**(params or {}), **query}.items() if value is not None}
        return self.client.request("GET", self.path, query=query)

    def get(self, record_id, **query):
        return self.client.request("GET", f"{self.path}/{quote(str(record_id), safe='')}", query=query)

    def create(self, data):
        return self.client.request("POST", self.path, data)

    def update(self, record_id, data):
        return self.client.request("PATCH", f"{self.path}/{quote(str(record_id), safe='')}", data)

    def delete(self, record_id):
        return self.client.request("DELETE", f"{self.path}/{quote(str(record_id), safe='')}")

    def delete_many(self, where):
        """Delete every record the filter (CEL text or a filter object) matches that you may delete: {count}."""
        return self.client.request("DELETE", f"{self.path}/bulk", {"filter": where})

    def update_many(self, where, changes):
        """Apply ``changes`` to every record the filter matches that you may update: {count}."""
        return self.client.request("PATCH", f"{self.path}/bulk", {"filter": where, "changes": changes})

    deleteMany, updateMany = delete_many, update_many


class Collections:
    """``alyx.collections.<name>`` (or ``alyx.collections["name"]``) → that collection."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Collection(self._client, name)

    __getitem__ = __getattr__


class Functions:
    """``alyx.functions.invoke(name, input)``: run another function as the same caller; its answer."""

    def __init__(self, client):
        self._client = client

    def invoke(self, name, input=None):  # noqa: A002 - the README's name
        return self._client.request("POST", f"/api/functions/{quote(name, safe='')}", {} if input is None else input)


class Events:
    """``alyx.events.publish({type, source, action, payload})``: a custom event for the hooks listening."""

    def __init__(self, client):
        self._client = client

    def publish(self, event):
        return self._client.request("POST", "/api/events", event)


class AlyxClient:
    """The Alyx REST API, called as the invocation's caller (req.alyx and get_context().alyx)."""

    def __init__(self, token):
        self.token = token
        self.collections = Collections(self)
        self.functions = Functions(self)
        self.events = Events(self)

    def request(self, method, path, body=None, query=None, timeout=30):
        if not API_SOCKET or not self.token:
            raise RuntimeError("the Alyx API is not available to this function")
        if query:
            path += "?" + urlencode(query)
        conn = _UnixHTTPConnection("alyx", timeout=timeout)
        try:
            payload = None if body is None else _dumps(body).encode()
            headers = {"X-Alyx-Callback-Token": self.token}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        if response.status >= 400:
            raise AlyxApiError(response.status, (data if isinstance(data, dict) else {}).get("error") or {})
        return data

    def collection(self, name):
        return Collection(self, name)


class Context:
    """What get_context() returns for the current invocation: .alyx, .auth, .env (also as ctx["alyx"])."""

    __slots__ = ("alyx", "auth", "env", "input", "trigger")

    def __init__(self, alyx, auth, env, input, trigger):  # noqa: A002
        self.alyx, self.auth, self.env, self.input, self.trigger = alyx, auth, env, input, trigger

    def __getitem__(self, key):
        return getattr(self, key)


_CURRENT = contextvars.ContextVar("alyx_context", default=None)


def get_context():
    """The context of the invocation running in this thread or task (contextvars: safe when calls overlap)."""
    current = _CURRENT.get()
    if current is None:
        raise RuntimeError("get_context() is only available while a function handles a call")
    return current


class _CurrentContext:
    """The ``ctx`` global: stands for get_context() of whichever invocation reads it."""

    __slots__ = ()

    def __getattr__(self, name):
        return getattr(get_context(), name)

    def __getitem__(self, key):
        return get_context()[key]

    def __repr__(self):
        return "<alyx ctx: the current invocation's context>"


ctx = _CurrentContext()


class _SdkModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import sdk`` / ``from sdk import get_context`` for functions without an sdk module of their own.

    Consulted after every other finder, so a function's own sdk.py or sdk/ wins.
    """

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "sdk" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__dict__.update(get_context=get_context, getContext=get_context, ctx=ctx, Context=Context,
                               AlyxApiError=AlyxApiError)


class Request:
    """What a handler receives as `req`."""

    def __init__(self, method, target, headers, body, context, alyx):
        parts = urlsplit(target)
        self.method = method
        self.path = unquote(parts.path, errors="replace")  # the server encoded it once
        self.query_all = parse_qs(parts.query, keep_blank_values=True)
        self.query = {k: v[0] for k, v in self.query_all.items()}
        self.headers = headers
        self.raw_body = body
        try:
            self.body = body.decode("utf-8")
        except UnicodeDecodeError:
            self.body = body
        self.json = None
        if body and "json" in headers.get("content-type", ""):
            try:
                self.json = json.loads(body)
            except ValueError:
                self.json = None
        self.auth = context.get("auth")
        self.trigger = context.get("trigger", "http")
        self.input = context.get("input")
        if self.input is None and self.trigger == "http":
            self.input = self.json  # a JSON call (alyx.functions.invoke too) carries its input as the body
        self.env = dict(STATE["env"])
        self.alyx = alyx

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


class Response:
    """What a handler receives as `res`: chainable status/header, then json/text/send."""

    def __init__(self):
        self.status_code = 200
        self.headers = {}
        self.body = b""
        self.sent = False

    def status(self, code):
        self.status_code = int(code)
        return self

    def header(self, name, value):
        self.headers[str(name)] = str(value)
        return self

    set_header = header

    def _finish(self, body, content_type, status):
        if status is not None:
            self.status_code = int(status)
        if not any(k.lower() == "content-type" for k in self.headers):
            self.headers["Content-Type"] = content_type
        self.body = body
        self.sent = True
        return self

    def json(self, data, status=None):
        return self._finish(json.dumps(data, default=str).encode(), "application/json", status)

    def text(self, text, status=None):
        return self._finish(str(text).encode(), "text/plain; charset=utf-8", status)

    def send(self, body=b"", status=None):
        if isinstance(body, (dict, list)):
            return self.json(body, status)
        if isinstance(body, str):
            return self._finish(body.encode(), "text/html; charset=utf-8", status)
        return self._finish(bytes(body), "application/octet-stream", status)

    def redirect(self, url, status=302):
        self.headers["Location"] = url
        return self._finish(b"", "text/plain; charset=utf-8", status)


def _describe(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _load(body):
    if STATE["function"] is not None:
        return 409, {"error": {"code": "already_initialized", "message": "this sandbox is bound already"}}
    code_dir, entry = body["code_dir"], body["entry"]
    env = body.get("env") or {}
    os.environ.update(env)
    STATE["env"] = env
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    try:
        spec = importlib.util.spec_from_file_location("alyx_function", os.path.join(code_dir, entry))
        module = importlib.util.module_from_spec(spec)
        sys.modules["alyx_function"] = module
        spec.loader.exec_module(module)
        handler = getattr(module, body.get("handler") or "handler", None)
        if not callable(handler):
            raise TypeError(f"{entry} defines no function named {body.get('handler') or 'handler'!r}")
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit
        traceback.print_exc()
        sys.stderr.flush()
        details = {"traceback": traceback.format_exc()}
        if isinstance(exc, SyntaxError):
            details.update({"file": os.path.basename(exc.filename or entry), "line": exc.lineno})
        return 422, {"error": {"code": "function_load_error", "message": _describe(exc), "details": details}}
    STATE["handler"] = handler
    STATE["function"] = body.get("function") or entry
    return 200, {"ok": True}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "alyx-python"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, headers=None, content_type="application/json"):
        self.send_response(status)
        headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        for k, v in headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if not hmac.compare_digest(self.headers.get("x-alyx-secret", "").encode(), SECRET):
            return self._reply(401, b'{"error": {"code": "unauthorized", "message": "bad runtime secret"}}')
        if self.path == "/__rt/health":
            info = {"ok": True, "runtime": "python", "pid": os.getpid(), "function": STATE["function"]}
            return self._reply(200, json.dumps(info).encode())
        if self.path == "/__rt/init":
            status, payload = _load(json.loads(body))
            self._mark_end("init")
            return self._reply(status, json.dumps(payload).encode())
        self._invoke(body)

    def _invoke(self, body):
        invocation = self.headers.get("x-alyx-invocation-id", "")
        if STATE["handler"] is None:
            return self._reply(409, b'{"error": {"code": "not_initialized", "message": "no function bound"}}')
        raw_context = self.headers.get("x-alyx-context")
        context = json.loads(base64.b64decode(raw_context)) if raw_context else {}
        headers = {k.lower(): v for k, v in self.headers.items() if not k.lower().startswith("x-alyx-")}
        req = Request(self.command, self.path, headers, body, context, AlyxClient(context.get("callback_token")))
        res = Response()
        extra = {"x-alyx-outcome": "ok"}
        current = _CURRENT.set(Context(req.alyx, req.auth, req.env, req.input, req.trigger))
        try:
            result = STATE["handler"](req, res)
            if hasattr(result, "__await__"):
                import asyncio  # only async handlers pay for importing it

                result = asyncio.run(result)
            if not res.sent:
                if result is None:
                    res.status(204)
                elif isinstance(result, Response):
                    res = result
                elif isinstance(result, (bytes, str)):
                    res.send(result)
                else:
                    res.json(result)
        except MemoryError:
            res = Response().json({"error": {"code": "memory_limit_exceeded",
                                             "message": "The function ran out of memory."}}, 500)
            extra = {"x-alyx-outcome": "memory_limit_exceeded", "x-alyx-retire": "1"}
        except BaseException as exc:  # noqa: BLE001 - a handler may raise anything
            traceback.print_exc()
            res = Response().json({"error": {"code": "function_error", "message": _describe(exc)}}, 500)
            extra = {"x-alyx-outcome": "function_error"}
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                extra["x-alyx-retire"] = "1"
        finally:
            _CURRENT.reset(current)
        if not 200 <= res.status_code <= 599:  # HTTP has no such final status: the server answers 502
            res = Response().json({"error": {"code": "function_bad_response", "message": (
                f"The function answered with HTTP status {res.status_code}; expected 200-599.")}}, 502)
            extra = {"x-alyx-outcome": "function_error"}
        self._mark_end(invocation)
        self._reply(res.status_code, res.body, {**res.headers, **extra})

    @staticmethod
    def _mark_end(invocation):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
                stream.write(END_MARK.format(invocation))
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream must not fail the call
                pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64

    def get_request(self):
        sock, _ = self.socket.accept()
        return sock, ("sandbox", 0)


def _exit_with_server():
    # The server holds the other end of stdin: EOF means it is gone, so this sandbox goes too.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def main():
    sys.meta_path.append(_SdkModule())
    builtins.ctx = ctx  # plain functions may use the global, as in Node
    if LIFELINE == "stdin":
        threading.Thread(target=_exit_with_server, daemon=True).start()
    if os.path.exists(SOCKET_PATH):
        os.unlink(SOCKET_PATH)
    server = Server(SOCKET_PATH, Handler)
    os.chmod(SOCKET_PATH, 0o666)
    server.serve_forever()


if __name__ == "__main__":
    main()
