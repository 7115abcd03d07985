"""peewee's pooled databases as a gevent worker uses them: per-greenlet state, a lean checkout and return.

Alyx's database (alyx/db.py) is one of these two classes. A request borrows a pooled connection and
gives it back; in a gevent worker every "thread" is a greenlet of one OS thread, and peewee's
per-thread state, locks and layers around that borrow were about a third of a GET's own
instructions (docs/benchmarks.md, round 4). Unpatched (the dev server's threads, the CLI), peewee's
paths run as they are.
"""
from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any

import peewee
from gevent import getcurrent
from playhouse.pool import PoolConnection, PooledPostgresqlDatabase, PooledSqliteDatabase

from alyx.background import threading_is_greenlets


class _PerGreenletState:
    """peewee's connection state, one per greenlet (and so one per thread: each has its own main greenlet).

    peewee keeps it in a ``threading.local`` subclass made when peewee is first imported; gunicorn's
    master imports peewee before a gevent worker patches, so that local would be shared by every
    greenlet of a worker, and one request's teardown would close the connection under another's
    transaction. A patched ``threading.local`` is per greenlet but costs ~1 µs per ``reset()``
    (three per request). This keeps a plain state object in the current greenlet's ``__dict__``
    instead: it goes with its greenlet, and reading it is one dict lookup. peewee's own assignment
    of ``self._state`` at ``__init__`` is ignored (this is a data descriptor).
    """

    def __get__(self, database: peewee.Database | None, owner: type) -> Any:
        if database is None:
            return self
        key: str = database.__dict__[_KEY]
        slots = getcurrent().__dict__
        state = slots.get(key)
        if state is None:
            state = slots[key] = peewee._ConnectionState()
        return state

    def __set__(self, database: peewee.Database, value: object) -> None:
        """peewee's ``__init__`` assigns its own state: give the database a key no other one ever had
        (an ``id()`` can be reused by a later database, which would inherit a stale open state)."""
        database.__dict__[_KEY] = f"alyx.db.state.{next(_TOKENS)}"


_KEY = "_alyx_state_key"  # the database's key in each greenlet's __dict__
_TOKENS = itertools.count(1)


class _GreenletPool:
    """peewee's pool checkout and return, the common case in a few steps when threads are greenlets.

    A request borrows a pooled connection and gives it back; through peewee's layers (its database
    and pool locks, the exception wrapper, the per-call bookkeeping) that was ~58,000 instructions,
    a quarter of a GET's own work (docs/benchmarks.md). In a gevent worker nothing else can run
    between these steps (no step yields), so ``connect`` takes the oldest idle connection that is
    neither closed nor stale and ``close`` puts a reusable one back, exactly as the pool would,
    with peewee's own checks (``_is_closed``, ``_is_stale``, ``_can_reuse``). Everything else (an
    empty pool, a stale or closed connection, an open transaction, plain threads) is peewee's path.
    """

    _one_thread = False  # True in a gevent-patched process (see __init__)
    _state: Any
    _connections: list[tuple[float, int, Any]]
    _in_use: dict[int, PoolConnection]
    _heap_counter: int
    _stale_timeout: int | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if threading_is_greenlets() and not getattr(self, "_wait_timeout", None):
            self._drop_locks()
            self._one_thread = True

    def _drop_locks(self) -> None:
        """No-ops for the locks peewee takes twice per checkout and twice per return.

        Between greenlets of one OS thread a lock matters only if its holder can yield, and these
        are held only around pool bookkeeping and opening or closing a driver connection, which never
        yield here (sqlite3 and psycopg2 without a wait callback block the OS thread; Alyx installs no
        such callback). Patched by gevent, each is a pure-Python lock: together ~18% of a GET's
        instructions (docs/benchmarks.md, round 4). No one waits on the pool's condition: Alyx sets
        no pool timeout (``__init__`` keeps the real locks of a pool that has one), so a full pool
        answers 503 at once (``unavailable``) instead of waiting.
        """
        lock = _UncontendedLock()
        self._lock = lock  # as peewee's own thread_safe=False does
        self._pool_lock = lock
        self._pool_available = lock

    def connect(self, reuse_if_open: bool = False) -> bool:
        state = self._state
        if self._one_thread and state.closed and self._connections:
            timestamp, _, conn = self._connections[0]
            if not (self._stale_timeout and self._is_stale(timestamp)) and not self._is_closed(conn):
                heapq.heappop(self._connections)
                self._in_use[id(conn)] = PoolConnection(timestamp, conn, time.time())
                state.set_connection(conn)
                return True
        opened: bool = super().connect(reuse_if_open)  # type: ignore[misc]
        return opened

    def close(self) -> bool:
        state = self._state
        if self._one_thread and not state.closed and not state.transactions:
            conn = state.conn
            checked_out = self._in_use.get(id(conn))
            if checked_out is not None and not (self._stale_timeout and self._is_stale(checked_out.timestamp)) \
                    and self._can_reuse(conn):
                del self._in_use[id(conn)]
                self._heap_counter += 1
                heapq.heappush(self._connections, (checked_out.timestamp, self._heap_counter, conn))
                state.reset()
                return True
        closed: bool = super().close()  # type: ignore[misc]
        return closed

    if TYPE_CHECKING:
        def _is_stale(self, timestamp: float) -> bool: ...
        def _is_closed(self, conn: Any) -> bool: ...
        def _can_reuse(self, conn: Any) -> bool: ...


class SqlitePool(_GreenletPool, PooledSqliteDatabase):  # type: ignore[misc]  # playhouse is untyped
    """peewee's pooled SQLite database with per-greenlet connection state."""

    _state = _PerGreenletState()


class PostgresqlPool(_GreenletPool, PooledPostgresqlDatabase):  # type: ignore[misc]
    """peewee's pooled PostgreSQL database with per-greenlet connection state."""

    _state = _PerGreenletState()


class _UncontendedLock:
    """A lock for code that never yields while holding it, among greenlets of one OS thread: a no-op."""

    def __enter__(self) -> _UncontendedLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def notify(self, n: int = 1) -> None:  # the pool's "a connection came back" condition: no one waits
        return None

    def notify_all(self) -> None:
        return None
