"""Faults of the database answer 503 with Retry-After and a message, never 500, and lose nothing
acknowledged (issue 15 item 15): a SQLite file locked by another process, a PostgreSQL connection
terminated by the server and a database that was dropped (real), a full disk (the mapping, with
the error SQLite raises injected: a real full filesystem would need a mount)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import orjson
import peewee
import psycopg2
import pytest
from playhouse.pool import MaxConnectionsExceeded

from alyx.db import unavailable
from alyx.realtime import Client
from alyx.realtime.websocket import Session
from tests.conftest import PG_ADMIN_DSN, TEST_ENV, AppMaker
from tests.helpers import assert_error, pg_database

SCHEMA = """
collections:
  - name: notes
    fields:
      - {name: text, type: string}
    rules: {list: "true", view: "true", create: "true"}
"""
NOTES = "/api/collections/notes"


def assert_unavailable(resp) -> dict:
    error = assert_error(resp, 503, "unavailable")
    assert error["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    return error


def texts(client) -> list[str]:
    resp = client.get(NOTES)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [item["text"] for item in resp.get_json()["items"]]


@pytest.fixture
def maker(tmp_path):
    made = AppMaker(tmp_path, dict(TEST_ENV))
    yield made
    made.close()


def test_sqlite_locked_by_another_process_is_503(maker):
    app = maker(SCHEMA, "database:\n  busy_timeout_ms: 200\n")
    client = app.test_client()
    assert client.post(NOTES, json={"text": "before"}).status_code == 201
    path = str(app.extensions["alyx"].config.sqlite_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert "locked" in assert_unavailable(client.post(NOTES, json={"text": "while locked"}))["message"]
        assert texts(client) == ["before"]  # WAL readers are not blocked
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert client.post(NOTES, json={"text": "after"}).status_code == 201
    assert texts(client) == ["before", "after"]  # what was acknowledged, and only that


def test_postgres_connections_terminated_by_the_server_are_503_then_recover(maker):
    with pg_database() as url:
        app = maker(SCHEMA, env={"ALYX_DATABASE_URL": url})
        client = app.test_client()
        assert client.post(NOTES, json={"text": "kept"}).status_code == 201
        name = url.rsplit("/", 1)[1]
        admin = psycopg2.connect(PG_ADMIN_DSN)
        admin.autocommit = True
        try:
            db = app.extensions["alyx"].db
            with db.connection():  # the request below reuses this connection: it dies under the request
                db.ping()
                with admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                assert_unavailable(client.get(NOTES))
            # The dead connection left the pool: the next requests get a fresh one.
            assert client.post(NOTES, json={"text": "after"}).status_code == 201
            assert texts(client) == ["kept", "after"]
        finally:
            admin.close()


def test_postgres_database_dropped_is_503(maker):
    with pg_database() as url:
        app = maker(SCHEMA, env={"ALYX_DATABASE_URL": url})
        client = app.test_client()
        assert client.post(NOTES, json={"text": "x"}).status_code == 201
        admin = psycopg2.connect(PG_ADMIN_DSN)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            admin.close()
        for _ in range(2):  # the pooled connection is dead, then a new one cannot be made
            assert_unavailable(client.get(NOTES))
        assert_unavailable(client.post(NOTES, json={"text": "y"}))


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database or disk is full"),
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("disk I/O error"),
    psycopg2.OperationalError("server closed the connection unexpectedly"),
    psycopg2.InterfaceError("connection already closed"),
    MaxConnectionsExceeded("Exceeded maximum connections."),
])
def test_fault_mapping(error):
    for raised in (error, peewee.OperationalError(error, *error.args)):  # raw, and as peewee wraps it
        mapped = unavailable(raised)
        assert mapped is not None and mapped.status == 503 and mapped.code == "unavailable"
        assert int(mapped.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("error", [sqlite3.OperationalError("no such table: x"), ValueError("x"),
                                   psycopg2.ProgrammingError("syntax error")])
def test_bugs_are_not_faults(error):
    assert unavailable(error) is None


def test_full_disk_on_write_is_503_and_not_saved(maker):
    """A real SQLITE_FULL: the pooled connection may not grow the file (max_page_count), as on a full disk."""
    app = maker(SCHEMA)
    client = app.test_client()
    db = app.extensions["alyx"].db
    assert texts(client) == []  # the pool now holds one idle connection, which the next request takes
    with db.connection():
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
    error = assert_unavailable(client.post(NOTES, json={"text": "lost? " * 20_000}))  # needs new pages
    assert "full" in error["message"]
    with db.connection():
        db.execute("PRAGMA max_page_count = 1073741823")
    assert texts(client) == []


def test_realtime_frames_map_faults_too(maker, monkeypatch):
    app = maker(SCHEMA)
    rt = app.extensions["alyx"].realtime
    client = Client(rt, "c1", wake=lambda: None)

    def locked(*args, **kwargs):
        raise peewee.OperationalError("database is locked")

    monkeypatch.setattr(rt, "subscribe", locked)
    Session(rt, client, None, None).handle(orjson.dumps({"id": "1", "type": "subscribe",
                                                          "payload": {"collection": "notes"}}))
    reply = orjson.loads(client.outbox.popleft())
    assert reply["type"] == "error" and reply["payload"]["code"] == "unavailable", reply


@pytest.mark.parametrize("error", [psycopg2.errors.DeadlockDetected("deadlock detected"),
                                   psycopg2.errors.SerializationFailure("could not serialize access")])
def test_a_deadlock_is_a_concurrent_write_not_a_lost_connection(error):
    mapped = unavailable(peewee.OperationalError(error, *error.args))
    assert mapped is not None and mapped.status == 503
    assert "connection" not in mapped.message and mapped.headers["Retry-After"] == "1", mapped.message
