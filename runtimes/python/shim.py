"""The Alyx Python runtime shim: serves the runtime protocol (DESIGN.md §6) over a Unix socket.

Loaded once per sandbox; user code is loaded by POST /__rt/init, then every other request is an
invocation of that code. Standard library only: it runs inside minimal images.

It starts fast (docs/functions.md, "Where a start goes"): HTTP/1.1 is spoken by hand here, not
through http.server / http.client (which import email, ssl and ~25 ms of modules), and what only
errors need (traceback, datetime) is imported when an error happens.
"""
import time

BOOT = {"main": time.time()}  # when this file started to run (after the interpreter's own start)

# Only built-in and frozen modules: json, socket and urllib.parse would bring re, enum, selectors,
# math and ipaddress (~10 ms); the few pieces of them this shim needs are below, on their C parts.
import _json  # noqa: E402 - the boot mark comes first
import _socket  # noqa: E402
import _thread  # noqa: E402
import binascii  # noqa: E402
import builtins  # noqa: E402
import contextvars  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from _operator import _compare_digest  # noqa: E402 - hmac.compare_digest, without importing hashlib
from importlib.machinery import ModuleSpec, SourceFileLoader  # noqa: E402

SOCKET_PATH = os.environ.pop("ALYX_SOCKET", "/run/alyx/rt.sock")
LISTEN_FD = os.environ.pop("ALYX_LISTEN_FD", "")  # a socket the server bound and listens on for us


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
MAX_LINE = 65536
MAX_HEADERS = 100
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
           303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class _Json:
    """json.loads / json.dumps (default arguments) on the json module's C scanner and encoder."""

    strict, object_hook, object_pairs_hook, parse_float, parse_int = True, None, None, float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    WHITESPACE = " \t\n\r"

    def __init__(self):
        self._scan = _json.make_scanner(self)

    def loads(self, text):
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8-sig")
        start = len(text) - len(text.lstrip(self.WHITESPACE))
        try:
            value, end = self._scan(text, start)
        except StopIteration:
            raise ValueError(f"Expecting value: char {start}") from None
        if text[end:].strip(self.WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return value

    def dumps(self, value, default=None):
        def refuse(obj):
            raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

        if isinstance(value, str):
            return _json.encode_basestring_ascii(value)
        encode = _json.make_encoder({}, default or refuse, _json.encode_basestring_ascii, None, ": ", ", ",
                                    False, False, True)
        return "".join(encode(value, 0))


json = _Json()
_HEXDIG = "0123456789ABCDEFabcdef"
_HEXBYTE = {(a + b).encode(): bytes.fromhex(a + b) for a in _HEXDIG for b in _HEXDIG}
_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def unquote(text):
    """urllib.parse.unquote(text, errors="replace"): %XX sequences decoded as UTF-8."""
    if "%" not in text:
        return text
    bits = text.encode("utf-8", "surrogateescape").split(b"%")
    out = [bits[0]]
    for item in bits[1:]:
        byte = _HEXBYTE.get(item[:2])
        out.append(byte + item[2:] if byte else b"%" + item)
    return b"".join(out).decode("utf-8", "replace")


def quote(text, safe="/"):
    """urllib.parse.quote: what is not unreserved (or in ``safe``) as %XX of its UTF-8."""
    keep = _ALWAYS_SAFE | frozenset(safe.encode("ascii"))
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in str(text).encode("utf-8"))


def urlencode(query):
    """urllib.parse.urlencode of a dict: quote_plus'd names and values joined by & and =."""
    def plus(value):
        return quote(str(value), " ").replace(" ", "+")

    return "&".join(f"{plus(k)}={plus(v)}" for k, v in query.items())


def parse_qs(query):
    """urllib.parse.parse_qs(query, keep_blank_values=True): name → every value, in order."""
    found = {}
    for field in query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        found.setdefault(unquote(name.replace("+", " ")), []).append(unquote(value.replace("+", " ")))
    return found


class _SocketReader(io.RawIOBase):
    """A socket's receiving side as a raw file: socket.makefile("rb") without socket.py."""

    def __init__(self, sock):
        super().__init__()
        self.sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        return self.sock.recv_into(buffer)


def reader(sock):
    return io.BufferedReader(_SocketReader(sock), 65536)


BOOT["imported"] = time.time()


class BadRequest(Exception):
    """A request (or an answer of the API socket) that is not HTTP/1.1 as this shim reads it."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def read_head(rfile):
    """The start line and headers of one HTTP message: (start line, [(name, value)]); None at EOF."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # stray line ends between messages are allowed (RFC 9112 2.2)
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest(414, "request line too long")
    headers = []
    while True:
        raw = rfile.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise BadRequest(431, "header line too long")
        if raw in (b"\r\n", b"\n", b""):
            break
        if len(headers) >= MAX_HEADERS:
            raise BadRequest(431, "too many headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise BadRequest(400, "bad header line")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def first_values(headers):
    """Lower-case name → its first value (what a repeated header's lookup gives)."""
    found = {}
    for name, value in headers:
        found.setdefault(name.lower(), value)
    return found


def read_body(rfile, fields):
    """A message body by Content-Length, or chunked (answers of the API socket may be)."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int(rfile.readline(MAX_LINE + 1).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(rfile.read(size))
            rfile.readline(MAX_LINE + 1)
    try:
        length = int(fields.get("content-length") or 0)
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    if length < 0:
        raise BadRequest(400, "bad Content-Length")
    body = rfile.read(length) if length else b""
    if len(body) < length:
        raise EOFError("the connection closed inside a body")
    return body


def _header_text(value):
    return str(value).replace("\r", " ").replace("\n", " ")


class AlyxApiError(Exception):
    """An error answer of the Alyx API: .status and .error ({code, message, details})."""

    def __init__(self, status, error):
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.error = error


def _json_default(value):
    """Dates leave as RFC 3339 UTC (naive ones are taken as UTC), as the server stores and compares them."""
    datetime = sys.modules.get("datetime")  # a date exists only if its module was imported: no import here
    if datetime is None:
        return str(value)
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
    datetime = sys.modules.get("datetime")
    if datetime is not None and isinstance(value, datetime.date):
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


_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # what a request target may hold as it is


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
        payload = b"" if body is None else _dumps(body).encode()
        head = [f"{method} {quote(path, safe=_TARGET_SAFE)} HTTP/1.1", "Host: alyx", "Connection: close",
                f"X-Alyx-Callback-Token: {_header_text(self.token)}", f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(API_SOCKET)
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            with reader(conn) as rfile:
                start = read_head(rfile)
                if start is None:
                    raise ConnectionError("the Alyx API closed the connection without an answer")
                status = int(start[0].split(" ", 2)[1])
                fields = first_values(start[1])
                raw = b"" if method == "HEAD" or status in (204, 304) else (
                    read_body(rfile, fields) if "content-length" in fields or "transfer-encoding" in fields
                    else rfile.read())
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        if status >= 400:
            raise AlyxApiError(status, (data if isinstance(data, dict) else {}).get("error") or {})
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


class _SdkModule:
    """``import sdk`` / ``from sdk import get_context`` for functions without an sdk module of their own.

    A meta path finder and loader, consulted after every other finder, so a function's own sdk.py or sdk/ wins.
    """

    def find_spec(self, name, path=None, target=None):
        return ModuleSpec(name, self) if name == "sdk" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__dict__.update(get_context=get_context, getContext=get_context, ctx=ctx, Context=Context,
                               AlyxApiError=AlyxApiError)


class Request:
    """What a handler receives as `req`."""

    def __init__(self, method, target, headers, body, context, alyx):
        path, _, query = target.partition("#")[0].partition("?")
        self.method = method
        self.path = unquote(path)  # the server encoded it once
        self.query_all = parse_qs(query)
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
    import traceback  # only failures need it

    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _print_traceback():
    import traceback

    traceback.print_exc()
    sys.stderr.flush()
    return traceback.format_exc()


def _load(body):
    """Bind: import the function's module. The answer carries load_ms and the bind's marks (epoch seconds:
    the request in, the import begun and done, bound), which the server turns into phases."""
    if STATE["function"] is not None:
        return 409, {"error": {"code": "already_initialized", "message": "this sandbox is bound already"}}
    began, received = time.perf_counter(), time.time()
    code_dir, entry = body["code_dir"], body["entry"]
    env = body.get("env") or {}
    os.environ.update(env)
    STATE["env"] = env
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    try:
        path = os.path.join(code_dir, entry)
        spec = ModuleSpec("alyx_function", SourceFileLoader("alyx_function", path), origin=path)
        spec.has_location = True
        module = type(sys)("alyx_function")
        module.__spec__, module.__file__, module.__loader__ = spec, path, spec.loader
        sys.modules["alyx_function"] = module
        importing = time.time()
        spec.loader.exec_module(module)
        imported = time.time()
        handler = getattr(module, body.get("handler") or "handler", None)
        if not callable(handler):
            raise TypeError(f"{entry} defines no function named {body.get('handler') or 'handler'!r}")
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit
        details = {"traceback": _print_traceback()}
        if isinstance(exc, SyntaxError):
            details.update({"file": os.path.basename(exc.filename or entry), "line": exc.lineno})
        return 422, {"error": {"code": "function_load_error", "message": _describe(exc), "details": details}}
    STATE["handler"] = handler
    STATE["function"] = body.get("function") or entry
    marks = {"received": received, "importing": importing, "imported": imported, "bound": time.time()}
    return 200, {"ok": True, "load_ms": round((time.perf_counter() - began) * 1000, 3), "marks": marks}


def _reply(conn, method, status, body, headers=None, content_type="application/json"):
    """One answer, sent whole (headers and body in one write: no Nagle-style stall)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    has_type = False
    for k, v in (headers or {}).items():
        lower = k.lower()
        if lower in ("content-length", "connection", "transfer-encoding"):
            continue
        has_type = has_type or lower == "content-type"
        lines.append(f"{_header_text(k)}: {_header_text(v)}")
    if not has_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    conn.sendall(head if method == "HEAD" else head + body)


def _mark_end(invocation):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            stream.write(END_MARK.format(invocation))
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not fail the call
            pass


def _invoke(method, target, fields, headers, body):
    """One invocation of the bound handler: (status, body, headers)."""
    invocation = fields.get("x-alyx-invocation-id", "")
    if STATE["handler"] is None:
        return 409, b'{"error": {"code": "not_initialized", "message": "no function bound"}}', {}
    raw_context = fields.get("x-alyx-context")
    context = json.loads(binascii.a2b_base64(raw_context)) if raw_context else {}
    user_headers = {k.lower(): v for k, v in headers if not k.lower().startswith("x-alyx-")}
    req = Request(method, target, user_headers, body, context, AlyxClient(context.get("callback_token")))
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
        _print_traceback()
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
    _mark_end(invocation)
    return res.status_code, res.body, {**res.headers, **extra}


def _handle(method, target, fields, headers, body):
    """What one request of the runtime protocol is answered with: (status, body, headers)."""
    if not _compare_digest(fields.get("x-alyx-secret", "").encode("latin-1"), SECRET):
        return 401, b'{"error": {"code": "unauthorized", "message": "bad runtime secret"}}', {}
    if target == "/__rt/health":
        info = {"ok": True, "runtime": "python", "pid": os.getpid(), "function": STATE["function"], "boot": BOOT}
        return 200, json.dumps(info).encode(), {}
    if target == "/__rt/init":
        status, payload = _load(json.loads(body))
        _mark_end("init")
        return status, json.dumps(payload).encode(), {}
    return _invoke(method, target, fields, headers, body)


def _serve(conn):
    """One connection: HTTP/1.1 requests in turn (keep-alive) until the server closes it."""
    rfile = reader(conn)
    try:
        while True:
            try:
                head = read_head(rfile)
                if head is None:
                    return
                parts = head[0].split()
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    raise BadRequest(400, "bad request line")
                method, target, version = parts
                fields = first_values(head[1])
                body = read_body(rfile, fields)
            except BadRequest as exc:
                message = json.dumps({"error": {"code": "bad_request", "message": str(exc)}}).encode()
                _reply(conn, "GET", exc.status, message, {"Connection": "close"})
                return
            status, payload, headers = _handle(method, target, fields, head[1], body)
            _reply(conn, method, status, payload, headers)
            connection = fields.get("connection", "").lower()
            if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
                return
    except (OSError, EOFError, ValueError):
        pass  # the server dropped the connection (a timeout, a too large answer): nothing to answer
    finally:
        rfile.close()
        conn.close()


def _exit_with_server():
    # The server holds the other end of stdin: EOF means it is gone, so this sandbox goes too.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def _listener():
    if LISTEN_FD:  # bound by the server before we started: callers could connect (and queue) already
        listener = _socket.socket(fileno=int(LISTEN_FD))
        listener.setblocking(True)  # a server under gevent made it non-blocking
        return listener
    if os.path.exists(SOCKET_PATH):
        os.unlink(SOCKET_PATH)
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(SOCKET_PATH)
    os.chmod(SOCKET_PATH, 0o666)
    listener.listen(64)
    return listener


def main():
    sys.meta_path.append(_SdkModule())
    builtins.ctx = ctx  # plain functions may use the global, as in Node
    if LIFELINE == "stdin":
        _thread.start_new_thread(_exit_with_server, ())
    listener = _listener()
    BOOT["listening"] = time.time()
    while True:  # each connection on its own thread: calls may overlap (concurrency > 1)
        fd, _ = listener._accept()
        _thread.start_new_thread(_serve, (_socket.socket(fileno=fd),))


if __name__ == "__main__":
    main()
