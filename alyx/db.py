"""Database URL or SQLite path → one pooled peewee Database, plus the per-process write lock."""
from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import peewee
import psycopg2.errors
import psycopg2.extras
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import MaxConnectionsExceeded

from alyx.clock import stored_text
from alyx.config import Config
from alyx.db_checkpoint import WAL_BACKSTOP_PAGES, WAL_SIZE_LIMIT, Checkpointer
from alyx.db_pool import PostgresqlPool, SqlitePool
from alyx.errors import AlyxError, ConfigError
from alyx.fields.json import read_json

# The mark on peewee's outermost transaction object of a Database.write(all_or_nothing=True).
ALL_OR_NOTHING = "alyx_all_or_nothing"
BEFORE_COMMIT = "alyx_before_commit"  # an all-or-nothing transaction's callbacks run just before its commit


class Database:
    """The peewee database of one app, and how writes are serialised inside this process.

    SQLite under gevent: a greenlet that yields inside a write transaction would let another
    greenlet's busy handler freeze the hub, so write transactions take one process-wide lock
    (STACK.md). PostgreSQL needs no such lock, and gets none.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.peewee = open_database(config)
        self.is_sqlite = isinstance(self.peewee, peewee.SqliteDatabase)
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self.checkpointer = Checkpointer(self.peewee.database) if self.is_sqlite else None
        self._inserts: dict[tuple[type[peewee.Model], frozenset[str]], PreparedInsert] = {}

    def start_checkpoints(self) -> None:
        """SQLite: checkpoint the WAL in the background from now on (alyx/db_checkpoint.py), once per worker."""
        if self.checkpointer is not None:
            self.checkpointer.start()

    def write(self, *, all_or_nothing: bool = False) -> WriteLock:
        """A write transaction: no network or sandbox calls belong inside it.

        Nested calls join the outermost one: the lock is re-entrant and peewee's ``atomic`` nests as
        a savepoint, so there is one ``BEGIN IMMEDIATE`` (SQLite) or ``BEGIN`` (PostgreSQL), and
        ``after_commit`` callbacks run after its commit only. ``all_or_nothing`` (a batch,
        alyx/batch.py): any error inside rolls the whole transaction back, so the writes nested in it
        need no savepoints of their own and join it as they are (two statements fewer each)."""
        return WriteLock(self, all_or_nothing)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """peewee's ``after_commit``: ``callback`` runs once the outermost transaction commits (never on a
        rollback), or now outside one; its per-greenlet state read once instead of four times (a few per write)."""
        state = getattr(self.peewee, "_state")  # noqa: B009 - peewee's private per-greenlet state
        transactions = state.transactions
        if not transactions:
            callback()
        elif isinstance(transactions[-1], peewee._manual):
            raise ValueError("after_commit() cannot be used with `manual`")
        else:
            state.commit_callbacks.append(callback)

    def before_commit(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` inside the current all-or-nothing transaction just before it commits, and
        say so (True); False when there is no such transaction (the caller does its work at once).
        For work that goes in as one statement for the whole batch (the change feed's rows)."""
        pending = getattr(self.peewee.top_transaction(), BEFORE_COMMIT, None)  # type: ignore[no-untyped-call]
        if pending is None:
            return False
        pending.append(callback)
        return True

    def insert(self, model: type[peewee.Model], row: Mapping[str, Any]) -> Any:
        """``model.insert(row).execute()`` for a row that names every column it fills (model
        defaults are not applied), returning the cursor (``lastrowid`` on SQLite; PostgreSQL's
        carries ``RETURNING`` the primary key). The statement is a ``PreparedInsert`` kept per
        (model, column set)."""
        key = (model, frozenset(row))
        prepared = self._inserts.get(key)
        if prepared is None:
            ordered = [f.name for f in model._meta.sorted_fields if f.name in row]
            # An unknown name makes the column lists differ: PreparedInsert then names it in its error.
            prepared = PreparedInsert(self.peewee, model, ordered if len(ordered) == len(row) else list(row))
            if len(self._inserts) < 1024:
                self._inserts[key] = prepared
        return prepared.run(row)

    def ping(self) -> None:
        """A round trip to the database (raises when it cannot be reached)."""
        self.execute("SELECT 1")

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Raw SQL on this thread's connection (DDL and catalog queries): a cursor (``run_sql``)."""
        return run_sql(self.peewee, sql, params)

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
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if not self.peewee.is_closed():
            self.peewee.close()
        close_all = getattr(self.peewee, "close_all", None)
        if close_all:
            close_all()


class WriteLock:
    """``Database.write()``: the process write lock (SQLite), then the transaction, left in reverse.

    A class, not a generator with an ExitStack, and the outermost transaction driven directly, as
    peewee's ``_transaction`` drives itself (``begin``, then ``commit`` and the after-commit callbacks,
    or ``rollback``), without ``atomic``'s layers: this is on every record write, and those layers
    cost more than SQLite's BEGIN and COMMIT (docs/benchmarks.md). Nested writes are peewee's
    ``atomic`` savepoints, as before."""

    __slots__ = ("db", "all_or_nothing", "outer", "nested", "pending")

    def __init__(self, db: Database, all_or_nothing: bool) -> None:
        self.db, self.all_or_nothing = db, all_or_nothing
        self.outer: Any = None  # the outermost transaction, begun here
        self.nested: Any = None  # or the savepoint of a write inside another one
        self.pending: list[Callable[[], None]] | None = None

    def __enter__(self) -> None:
        pw: Any = self.db.peewee
        transactions = pw._state.transactions  # peewee's stack (top_transaction, push_transaction)
        top = transactions[-1] if transactions else None
        if getattr(top, ALL_OR_NOTHING, False):
            return  # joins the all-or-nothing transaction (and its lock) as it is
        lock = self.db._write_lock
        if lock is not None:
            lock.acquire()
        try:
            if top is None:
                transaction = pw.transaction()
                pw.begin()
                transactions.append(transaction)
                self.outer = transaction
            else:
                self.nested = pw.atomic()
                self.nested.__enter__()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if self.all_or_nothing and self.outer is not None:
            self.pending = []
            setattr(self.outer, ALL_OR_NOTHING, True)
            setattr(self.outer, BEFORE_COMMIT, self.pending)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        outer, nested = self.outer, self.nested
        if outer is None and nested is None:
            return
        self.outer = self.nested = None
        try:
            if nested is not None:
                if exc_type is None or _still_in_transaction(self.db.peewee):
                    nested.__exit__(exc_type, exc, tb)  # releases, or rolls back to, the savepoint
                return  # (SQLite rolled the whole transaction back itself: the error goes up as it is)
            if exc_type is None:
                try:
                    pending = self.pending
                    while pending:  # the work folded in for the commit (see before_commit), inside it
                        pending.pop(0)()
                except BaseException:
                    _end(self.db.peewee, failed=True)
                    raise
            _end(self.db.peewee, failed=exc_type is not None)
        finally:
            lock = self.db._write_lock
            if lock is not None:
                lock.release()


def _end(pw: Any, failed: bool) -> None:
    """End the outermost transaction as peewee's ``_transaction.__exit__`` does: off the stack, then
    rolled back, or committed with its after-commit callbacks (rolled back if that fails)."""
    pw.pop_transaction()
    if failed:
        _roll_back(pw)
        return
    try:
        pw.commit()
        pw._run_commit_callbacks()
    except BaseException:
        _roll_back(pw)
        raise


def _roll_back(pw: Any) -> None:
    """What peewee's ``_transaction.rollback(begin=False)`` does: ROLLBACK, and forget the after-commit
    callbacks. After some errors (a full disk, an I/O error) SQLite has already rolled back; a ROLLBACK
    then fails ("no transaction is active") and would hide the error that says what happened."""
    try:
        if _still_in_transaction(pw):
            pw.rollback()
    finally:
        pw._clear_commit_callbacks()


def _still_in_transaction(pw: Any) -> bool:
    """False once SQLite ended the transaction by itself; PostgreSQL's stays open (aborted) until rolled back."""
    conn = pw._state.conn
    return conn is None or not isinstance(conn, sqlite3.Connection) or conn.in_transaction


def run_sql(database: peewee.Database, sql: str, params: Sequence[Any] = ()) -> Any:
    """``database.execute_sql(sql, params)`` on the open connection, in two steps instead of seven.

    The hot statements (a record read by id, the prepared inserts) run here: peewee's path (query
    logging at DEBUG, query hooks, the cursor's open check) cost as much as a fetch by id. Driver
    errors still become peewee's (``IntegrityError``, ``OperationalError``, ...). Statements run
    here are not in peewee's DEBUG query log; with no connection open, this is peewee's own path.
    """
    state: Any = getattr(database, "_state")  # noqa: B009 - peewee's private per-greenlet state
    if state.closed:
        return database.execute_sql(sql, params)  # type: ignore[no-untyped-call]  # (raises its error)
    with _DRIVER_ERRORS:
        cursor = state.conn.cursor()
        cursor.execute(sql, params)
    return cursor


_DRIVER_ERRORS: Any = getattr(peewee, "__exception_wrapper__")  # noqa: B009 - sqlite3/psycopg2 errors → peewee's


class RowReader:
    """Driver rows (tuples) of a column list → dicts of Python values, as peewee's ``dicts()`` reads them.

    Text and integer columns come from the driver as what their ``python_value`` returns (peewee's
    ``adapt`` would call ``str()`` on a str, ``int()`` on an int), so only the other columns (datetimes,
    booleans, JSON, ...) go through it: a list page of 50 rows made ~500 calls fewer."""

    __slots__ = ("names", "converted")

    def __init__(self, columns: Sequence[peewee.Field], convert: Mapping[str, Callable[[Any], Any]] | None = None
                 ) -> None:
        """``convert``: a column's own converter instead of its ``python_value`` (a collection's JSON reads)."""
        self.names = tuple(c.name for c in columns)
        convert = convert or {}
        self.converted: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
            (c.name, convert.get(c.name) or c.python_value) for c in columns if c.name in convert or not _read_as_is(c))

    def __call__(self, raw: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(self.names, raw, strict=True))
        for name, convert in self.converted:
            value = row[name]
            if value is not None:  # every python_value reads None as None
                row[name] = convert(value)
        return row


def _plain_type(field: peewee.Field) -> type | None:
    """str for a text column, int for an integer one, whose ``adapt`` is peewee's own (it returns a
    value of that type as it is); None for every other column."""
    adapt = type(field).adapt
    if isinstance(field, (peewee.CharField, peewee.TextField)) and adapt in (peewee.CharField.adapt,
                                                                            peewee.TextField.adapt):
        return str
    if isinstance(field, peewee.IntegerField) and adapt is peewee.IntegerField.adapt:
        return int  # (a bool is not one: type(True) is bool)
    return None


def _read_as_is(field: peewee.Field) -> bool:
    return _plain_type(field) is not None and type(field).python_value is peewee.Field.python_value


# peewee-stubs types .dicts()/.tuples() results and row counts loosely: these say what they are.
def dict_rows(query: Any) -> list[dict[str, Any]]:
    """A select's rows as dicts."""
    return list(query.dicts())


def dict_row(query: Any) -> dict[str, Any] | None:
    """A select's first row as a dict, or None."""
    row: dict[str, Any] | None = query.dicts().first()
    return row


def tuple_rows(query: Any) -> list[tuple[Any, ...]]:
    """A select's rows as tuples."""
    return list(query.tuples())


def row_count(query: Any) -> int:
    """Run an UPDATE or DELETE; how many rows it changed."""
    return int(query.execute())


class PreparedInsert:
    """One INSERT statement for a model and a fixed column list, built once and run many times.

    peewee's query builder took longer to build an INSERT than SQLite took to run it, so hot paths
    (record writes, the change feed, the job outbox) build the text once. Each value still goes
    through its field's ``db_value``; JSON columns get their JSON text (on SQLite the statement
    holds ``json(?)``, the way peewee writes it). Columns are written in the order given; they
    must include every column that has a model default (defaults are not applied here).
    """

    def __init__(self, database: peewee.Database, model: type[peewee.Model], columns: Sequence[str]) -> None:
        fields_by_name = model._meta.fields
        unknown = [name for name in columns if name not in fields_by_name]
        if unknown:
            raise ValueError(f"{model.__name__} has no field(s) {', '.join(sorted(unknown))}")
        fields = [fields_by_name[name] for name in columns]
        defaulted = sorted(f.name for f in model._meta.sorted_fields
                           if f.name not in columns and f.default is not None)
        if defaulted:  # peewee would add their defaults to the statement: name them instead
            raise ValueError(f"{model.__name__}: a prepared insert names every column with a default "
                             f"(missing {', '.join(defaulted)})")
        # JSON fields get a non-null sample: peewee wraps their placeholder in json(?) on SQLite.
        sample: list[Any] = [{} if isinstance(f, peewee.JSONField) else None for f in fields]
        sql, params = model.insert_many([sample], fields=fields).sql()
        if len(params) != len(fields):  # pragma: no cover - a peewee change would show here
            raise RuntimeError(f"unexpected INSERT for {model.__name__}: {sql}")
        self.database = database
        self.sql: str = sql
        self.columns: tuple[str, ...] = tuple(columns)
        self.json_columns: frozenset[str] = frozenset(f.name for f in fields if isinstance(f, peewee.JSONField))
        sqlite = isinstance(database, peewee.SqliteDatabase)
        self._converters = [(f.name, _written_as_is(f), _insert_converter(f, sqlite)) for f in fields]

    def values(self, row: Mapping[str, Any]) -> list[Any]:
        """The statement's parameters for ``row`` (which must hold every column); a str in a text
        column and an int in an integer one go as they are (their ``db_value`` would return them)."""
        return [value if type(value := row[name]) is as_is else convert(value)
                for name, as_is, convert in self._converters]

    def run(self, row: Mapping[str, Any]) -> Any:
        """Insert one row; returns the cursor."""
        return run_sql(self.database, self.sql, self.values(row))

    def run_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert rows one statement each on one cursor (inside the caller's transaction)."""
        cursor = self.database.cursor()  # type: ignore[no-untyped-call]
        for row in rows:
            cursor.execute(self.sql, self.values(row))


class _NeverAsIs:
    """The as-is type of a column whose every value goes through its converter (no value is of it)."""


def _written_as_is(field: peewee.Field) -> type:
    """The one value type a column's ``db_value`` returns unchanged (as ``RowReader`` reads them as is)."""
    plain = _plain_type(field) if type(field).db_value is peewee.Field.db_value else None
    return plain or _NeverAsIs


def _insert_converter(field: peewee.Field, sqlite: bool) -> Callable[[Any], Any]:
    """A field's ``db_value`` for a prepared INSERT. On SQLite a JSON field's ``db_value`` is the SQL
    ``json(<text>)``; the prepared text already holds ``json(?)``, so the parameter is the text. A
    datetime goes to SQLite as the text sqlite3's default adapter makes of it (``isoformat(" ")``, by ``stored_text``),
    without the adapter lookup."""
    if sqlite and isinstance(field, peewee.DateTimeField) and type(field).db_value is peewee.Field.db_value \
            and type(field).adapt is peewee.DateTimeField.adapt:
        db_value: Callable[[Any], Any] = field.db_value

        def to_sqlite_text(value: Any) -> Any:
            return stored_text(value) if type(value) is dt.datetime else db_value(value)

        return to_sqlite_text
    if isinstance(field, peewee.JSONField) and isinstance(field.db_value({}), peewee.Node):  # type: ignore[no-untyped-call]
        dumps: Callable[[Any], str] = getattr(field, "_dumps")  # noqa: B009 - peewee keeps it private

        def to_text(value: Any) -> Any:
            return None if value is None else dumps(value)

        return to_text
    convert: Callable[[Any], Any] = field.db_value
    return convert


def open_database(config: Config) -> peewee.Database:
    """Open the configured database; an unusable URL is a ConfigError naming the setting."""
    if config.database_url:
        url = config.database_url
        scheme = urlparse(url).scheme
        if scheme in ("postgres", "postgresql", "postgresql+pool", "postgres+pool"):
            params = parse_db_url(url)
            # psycopg2 decodes json/jsonb itself (peewee's loads is not used): read them as every JSON column reads.
            psycopg2.extras.register_default_json(globally=True, loads=read_json)
            psycopg2.extras.register_default_jsonb(globally=True, loads=read_json)
            postgres: peewee.Database = PostgresqlPool(
                params.pop("database"), max_connections=config.database_pool_size,
                stale_timeout=300, autoconnect=False, **params,
            )
            return postgres
        if scheme in ("sqlite", "sqlite+pool"):
            return _sqlite(url.split("://", 1)[1], config)
        raise ConfigError(f"database.url: unsupported scheme {scheme!r} (expected sqlite:/// or postgresql://)")
    sqlite_path = config.sqlite_path
    try:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"database.path: cannot create {sqlite_path.parent}: {exc.strerror}") from None
    return _sqlite(str(sqlite_path), config)


def _sqlite(path: str, config: Config) -> peewee.SqliteDatabase:
    sqlite: peewee.SqliteDatabase = SqlitePool(
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
            # Checkpoints run in the background (alyx/db_checkpoint.py); a commit draws one only past this.
            "wal_autocheckpoint": WAL_BACKSTOP_PAGES,
            "journal_size_limit": WAL_SIZE_LIMIT,
        },
        check_same_thread=False,
        # BEGIN IMMEDIATE: a deferred transaction that reads, then writes, fails at once with
        # SQLITE_BUSY when another worker committed in between; immediate ones wait their turn.
        lock_type="IMMEDIATE",
    )
    return sqlite


# SQLite's primary result codes that mean "the database cannot serve now", not "the query is wrong".
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = (
    5, 6, 7, 8, 10, 13, 14)
SQLITE_FAULTS = {  # code: (what the message says, words of SQLite's own message, Retry-After seconds)
    SQLITE_BUSY: ("The database is locked by another writer", "database is locked", 1),
    SQLITE_LOCKED: ("The database is locked by another writer", "table is locked", 1),
    SQLITE_FULL: ("The database's disk is full", "disk is full", 30),
    SQLITE_IOERR: ("The database's disk failed", "disk i/o error", 30),
    SQLITE_CANTOPEN: ("The database file cannot be opened", "unable to open database file", 30),
    SQLITE_READONLY: ("The database is read-only", "readonly database", 30),
    SQLITE_NOMEM: ("The database is out of memory", "out of memory", 30),
}


def unavailable(exc: BaseException) -> AlyxError | None:
    """A database fault as a 503 with Retry-After (the operation did not happen: a write that raised
    this was rolled back, so nothing acknowledged is lost), or None when the error is not a fault.

    Faults: SQLite busy/locked, full, I/O, cannot open, read-only; PostgreSQL connection and server
    errors (psycopg2 ``OperationalError``/``InterfaceError``: terminated backends, a dropped database,
    a disk full, too many connections); the pool out of connections. Bugs (no such table, syntax) are not.
    """
    original: BaseException = getattr(exc, "orig", None) or exc  # peewee keeps the driver's error as .orig
    if isinstance(original, MaxConnectionsExceeded):
        return _fault("All database connections are in use", 1)
    if isinstance(original, psycopg2.errors.TransactionRollbackError):  # deadlock, serialization failure
        return _fault("The write met a concurrent write", 1)
    if isinstance(original, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return _fault("The database connection failed or was lost", 5)
    if not isinstance(original, (sqlite3.OperationalError, sqlite3.DatabaseError, peewee.OperationalError)):
        return None
    text = str(original).lower()
    code = getattr(original, "sqlite_errorcode", None)
    for known, (message, words, retry) in SQLITE_FAULTS.items():
        if (code is not None and code & 0xFF == known) or words in text:
            return _fault(message, retry)
    return None


def _fault(message: str, retry_after: int) -> AlyxError:
    return AlyxError("unavailable", f"{message}; nothing was changed. Try again in {retry_after} s.", 503,
                     headers={"Retry-After": str(retry_after)})
