"""Database URL or SQLite path → one pooled peewee Database, plus the per-process write lock."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

import peewee
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from alyx.config import Config
from alyx.errors import ConfigError


class Database:
    """The peewee database of one app, and how writes are serialised inside this process.

    SQLite under gevent: a greenlet that yields inside a write transaction would let another
    greenlet's busy handler freeze the hub, so write transactions take one process-wide lock
    (STACK.md). PostgreSQL needs no such lock, and gets none.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.peewee = open_database(config)
        _per_greenlet_state(self.peewee)
        self.is_sqlite = isinstance(self.peewee, peewee.SqliteDatabase)
        self._write_lock = threading.RLock() if self.is_sqlite else None

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction: no network or sandbox calls belong inside it."""
        if self._write_lock is None:
            with self.peewee.atomic():
                yield
            return
        with self._write_lock, self.peewee.atomic():
            yield

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """Borrow a pooled connection for the duration of a request or a task."""
        opened = self.peewee.connect(reuse_if_open=True)
        try:
            yield
        finally:
            if opened:
                self.peewee.close()

    def close(self) -> None:
        if not self.peewee.is_closed():
            self.peewee.close()
        close_all = getattr(self.peewee, "close_all", None)
        if close_all:
            close_all()


def _per_greenlet_state(database: peewee.Database) -> None:
    """Give each greenlet its own connection state when gevent has patched threading.

    peewee's per-thread state class subclasses the ``threading.local`` that existed when peewee
    was first imported. gunicorn's master imports peewee (migrations in ``on_starting``) before
    the gevent worker patches, so without this every greenlet of a worker would share one
    connection, and one request's teardown would close it under another's transaction.
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return
    if not monkey.is_module_patched("threading") or isinstance(database._state, threading.local):
        return
    # Built here, not at import time: alyx.db may itself be imported before the patch.
    state_class = type("GreenletConnectionState", (peewee._ConnectionState, threading.local), {})
    database._state = state_class()


def open_database(config: Config) -> peewee.Database:
    """Open the configured database; an unusable URL is a ConfigError naming the setting."""
    if config.database_url:
        url = config.database_url
        scheme = urlparse(url).scheme
        if scheme in ("postgres", "postgresql", "postgresql+pool", "postgres+pool"):
            params = parse_db_url(url)
            return PooledPostgresqlDatabase(
                params.pop("database"), max_connections=config.database_pool_size,
                stale_timeout=300, autoconnect=False, **params,
            )
        if scheme in ("sqlite", "sqlite+pool"):
            path = url.split("://", 1)[1]
            return _sqlite(path, config)
        raise ConfigError(f"database.url: unsupported scheme {scheme!r} (expected sqlite:/// or postgresql://)")
    path = config.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"database.path: cannot create {path.parent}: {exc.strerror}") from None
    return _sqlite(str(path), config)


def _sqlite(path: str, config: Config) -> peewee.SqliteDatabase:
    return PooledSqliteDatabase(
        path,
        max_connections=config.database_pool_size,
        stale_timeout=300,
        autoconnect=False,
        pragmas={
            "journal_mode": "wal",
            "synchronous": "normal",
            "foreign_keys": 1,
            "busy_timeout": config.database_busy_timeout_ms,
            "cache_size": -16000,
            "temp_store": "memory",
        },
        check_same_thread=False,
        # BEGIN IMMEDIATE: a deferred transaction that reads, then writes, fails at once with
        # SQLITE_BUSY when another worker committed in between; immediate ones wait their turn.
        lock_type="IMMEDIATE",
    )
