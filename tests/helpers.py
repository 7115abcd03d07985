"""Assertions shared by the foundation tests (`from tests.helpers import ...`)."""
from __future__ import annotations

import atexit
import contextlib
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `status` with exactly the DESIGN.md error shape; returns the inner error object."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/json", resp.mimetype
    body = resp.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


class _Databases:
    """Fresh PostgreSQL databases, made one step ahead and dropped on a background thread.

    Every caller still gets a database nobody used before; only the CREATE and DROP (a tenth of a
    second each) happen while the tests run instead of in front of them.
    """

    ahead = 2

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._ready: list[str] = []
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._pending = 0  # creates queued but not done

    def _run(self, sql: str) -> None:
        admin = psycopg2.connect(self.admin_dsn)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(sql)
        finally:
            admin.close()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, name = job
            try:
                if kind == "create":
                    self._run(f'CREATE DATABASE "{name}"')
                    with self._lock:
                        self._ready.append(name)
                else:
                    self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg2.Error:
                pass  # a create that failed is made again in front of its caller; a drop, at the end
            finally:
                if kind == "create":
                    with self._lock:
                        self._pending -= 1
                self._jobs.task_done()

    def take(self) -> str:
        with self._lock:
            name = self._ready.pop(0) if self._ready else None
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, daemon=True, name="pg-databases")
                self._worker.start()
            missing = self.ahead - len(self._ready) - self._pending
            self._pending += max(0, missing)
        for _ in range(missing):
            self._jobs.put(("create", _new_name()))
        if name is None:
            name = _new_name()
            self._run(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._jobs.put(("drop", name))
        else:
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Finish the queued work and drop the databases made ahead and never used."""
        if self._worker is None:
            return
        self._jobs.put(None)
        self._worker.join(timeout=60)
        self._worker = None
        with self._lock:
            unused, self._ready = self._ready, []
        for name in unused:
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _new_name() -> str:
    return f"alyx_t_{uuid.uuid4().hex[:12]}"


_databases: _Databases | None = None


def close_databases() -> None:
    """Called once at the end of the session (conftest): drops what the pool still holds."""
    if _databases is not None:
        _databases.close()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards), for fixtures wider than one test."""
    global _databases
    from tests.conftest import PG_ADMIN_DSN

    if _databases is None:
        _databases = _Databases(PG_ADMIN_DSN)
        atexit.register(close_databases)
    name = _databases.take()
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _databases.drop(name)
