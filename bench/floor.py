"""The stack's ceiling for bench/crud.py: the same CRUD routes with no framework at all.

A bare WSGI callable (no Flask, no werkzeug, no peewee, no marshmallow, no rules, no change feed)
served by the same `gunicorn -k gevent -w 2` as Alyx, on the standard library's `sqlite3` (WAL,
`synchronous=NORMAL`, one connection per worker, autocommit), `orjson`, with `PATH_INFO` and the
query string parsed by hand. It answers what bench/crud.py asks of Alyx and PocketBase:

  POST /api/collections/<c>          create (the body must be a JSON object with a string title) → 201
  GET  /api/collections/<c>/<id>     one record by id → 200 / 404
  GET  /api/collections/<c>?...      perPage, page, skipTotal and a filter of `name op literal` terms
                                     joined by `&&` (ops == != > >= < <=; names checked against the
                                     table) → the list envelope with totalItems
  GET  /api/health                   200

It is what the benchmark compares Alyx's per-request overhead against; it is not a product.
bench/crud.py starts it as `python -m gunicorn -k gevent -w 2 --pythonpath bench floor:app` with
FLOOR_DB pointing at a fresh database file, in a temporary working directory (gunicorn would read
./gunicorn.conf.py otherwise). The system `floor1w` is this app with Alyx's gunicorn changes
installed too (alyx/gunicorn_response.py, alyx/gunicorn_worker.py; bench/crud.py writes the
gunicorn.conf.py that installs them), so the floor of the stack as Alyx runs it is measured too.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

TABLES = {  # collection → its columns after id (created_at/updated_at are last)
    "items": ("title", "body", "status", "views"),
    "tagged": ("title", "body", "cat", "n"),
}
DDL = {
    "items": "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, title TEXT, body TEXT, status TEXT, "
             "views INTEGER, created_at TEXT, updated_at TEXT); "
             "CREATE INDEX IF NOT EXISTS items_status ON items (status)",
    "tagged": "CREATE TABLE IF NOT EXISTS tagged (id TEXT PRIMARY KEY, title TEXT, body TEXT, cat TEXT, "
              "n INTEGER, created_at TEXT, updated_at TEXT)",
}
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TERM = re.compile(r'\s*([a-z_]+)\s*(==|!=|>=|<=|>|<)\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?)\s*$')
SQL_OPS = {"==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
JSON = [("Content-Type", "application/json")]

_conn: sqlite3.Connection | None = None
_inserts = {name: f"INSERT INTO {name} (id, {', '.join(cols)}, created_at, updated_at) "
                  f"VALUES ({', '.join('?' * (len(cols) + 3))})" for name, cols in TABLES.items()}
_selects = {name: f"SELECT id, {', '.join(cols)}, created_at, updated_at FROM {name}" for name, cols in TABLES.items()}
_names = {name: ("id", *cols, "created_at", "updated_at") for name, cols in TABLES.items()}


def connection() -> sqlite3.Connection:
    """This worker's one connection (opened after fork, on the first request)."""
    global _conn
    if _conn is None:
        _conn = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None, check_same_thread=False)
        _conn.execute("PRAGMA journal_mode=WAL")
        _conn.execute("PRAGMA synchronous=NORMAL")
        _conn.execute("PRAGMA busy_timeout=5000")
        for ddl in DDL.values():
            _conn.executescript(ddl)
    return _conn


def new_id() -> str:
    return "".join(ALPHABET[b % 36] for b in secrets.token_bytes(15))


def reply(start_response: Callable[..., Any], status: str, body: Any) -> list[bytes]:
    data = orjson.dumps(body)
    start_response(status, [*JSON, ("Content-Length", str(len(data)))])
    return [data]


def error(start_response: Callable[..., Any], status: str, message: str) -> list[bytes]:
    return reply(start_response, status, {"error": {"code": status[4:].lower().replace(" ", "_"),
                                                    "message": message, "details": {}}})


def as_record(table: str, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_names[table], row, strict=True))


def create(table: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        body = orjson.loads(environ["wsgi.input"].read(length))
    except orjson.JSONDecodeError:
        return error(start_response, "400 Bad Request", "invalid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        return error(start_response, "422 Unprocessable Entity", "title is required")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    row = (new_id(), *(body.get(col) for col in TABLES[table]), now, now)
    connection().execute(_inserts[table], row)
    return reply(start_response, "201 Created", as_record(table, row))


def view(table: str, record_id: str, start_response: Callable[..., Any]) -> list[bytes]:
    row = connection().execute(_selects[table] + " WHERE id = ?", (record_id,)).fetchone()
    if row is None:
        return error(start_response, "404 Not Found", "no such record")
    return reply(start_response, "200 OK", as_record(table, row))


def listing(table: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    args = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    per_page = int(args.get("perPage") or 30)
    page = int(args.get("page") or 1)
    where, params = [], []
    for term in filter(None, (args.get("filter") or "").split("&&")):
        match = TERM.match(term)
        if match is None or match.group(1) not in _names[table]:
            return error(start_response, "400 Bad Request", f"bad filter term {term!r}")
        name, op, literal = match.groups()
        where.append(f"{name} {SQL_OPS[op]} ?")
        params.append(orjson.loads(literal))
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    conn = connection()
    rows = conn.execute(f"{_selects[table]}{condition} ORDER BY rowid LIMIT ? OFFSET ?",
                        (*params, per_page, (page - 1) * per_page)).fetchall()
    total = -1
    if args.get("skipTotal") not in ("1", "true"):
        total = conn.execute(f"SELECT COUNT(*) FROM {table}{condition}", params).fetchone()[0]
    return reply(start_response, "200 OK", {
        "items": [as_record(table, row) for row in rows], "page": page, "perPage": per_page, "totalItems": total,
        "totalPages": -1 if total < 0 else -(-total // per_page)})


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    parts = environ["PATH_INFO"].split("/")
    method = environ["REQUEST_METHOD"]
    if len(parts) in (4, 5) and parts[1] == "api" and parts[2] == "collections" and parts[3] in TABLES:
        table = parts[3]
        if len(parts) == 5:
            if method == "GET":
                return view(table, parts[4], start_response)
        elif method == "POST":
            return create(table, environ, start_response)
        elif method == "GET":
            return listing(table, environ, start_response)
        return error(start_response, "405 Method Not Allowed", "method not allowed")
    if parts[1:] == ["api", "health"]:
        return reply(start_response, "200 OK", {"status": "ok"})
    return error(start_response, "404 Not Found", "no such route")
