"""The change feed (`_alyx_changes`): one row per committed write, appended inside its transaction.

The feed's cursor orders changes exactly as they committed; the database stays the source of
truth for realtime delivery (a broker only makes it faster).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import peewee

from alyx.clock import utcnow
from alyx.db import Database
from alyx.errors import AlyxError
from alyx.models import build_change_model
from alyx.records import ChangeEvent

log = logging.getLogger("alyx.realtime")

FEED_LOCK_KEY = zlib.crc32(b"alyx-change-feed")  # PostgreSQL advisory lock: feed rows commit in cursor order
FEED_LOCKED = "alyx_feed_locked"  # marks a transaction that holds it already
FEED_PENDING = "alyx_feed_pending"  # a batch's feed rows, inserted as one statement before its commit (PostgreSQL)
PG_CHANNEL = "alyx_changes"
READ_CHUNK = 1000
PRUNE_EVERY_SECONDS = 10.0


@dataclass(eq=False)
class Change:
    """One committed change as the feed holds it; `cursor` increases with commit order."""

    cursor: int
    collection: str
    action: str  # create | update | delete
    record: dict[str, Any]
    previous: dict[str, Any] | None = None
    typed: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)  # id(doc) → typed values

    def to_json(self) -> bytes:
        return orjson.dumps({"cursor": self.cursor, "collection": self.collection, "action": self.action,
                             "record": self.record, "previous": self.previous})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Change:
        data = orjson.loads(raw)
        return cls(int(data["cursor"]), data["collection"], data["action"], data["record"], data.get("previous"))


class CursorExpired(AlyxError):
    """A `since` cursor the feed no longer holds (or never held): the client must re-snapshot."""

    def __init__(self, message: str) -> None:
        super().__init__("cursor_expired", message, 410)


class ChangeFeed:
    """Appends changes inside the write transaction, reads them back in cursor order, prunes old ones."""

    def __init__(self, db: Database, retention_seconds: int, max_rows: int) -> None:
        self.db = db
        self.model: Any = build_change_model(db.peewee)  # Any: peewee's fields are class attributes
        self.retention_seconds = retention_seconds
        self.max_rows = max(max_rows, 1)
        self.on_commit: list[Callable[[Change], None]] = []
        self.notify_in_transaction = False  # PostgreSQL LISTEN/NOTIFY broker
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS

    def lock(self) -> None:
        """Take the feed lock until the current write transaction ends (PostgreSQL; SQLite's write lock
        serialises already). Sequence values are handed out at insert, not at commit: feed inserts are
        serialised until commit so that a reader never sees cursor N+1 before N.

        Every record write takes it first, before its first row write (the records service's
        ``begin`` hook point, alyx/services.py); taken at its first change instead, it would be awaited
        while the write holds row locks that another writer holding it waits for, a deadlock
        PostgreSQL breaks by failing one of them."""
        if self.db.is_sqlite:
            return
        pw: Any = self.db.peewee
        transaction = pw.top_transaction()
        if getattr(transaction, FEED_LOCKED, False):
            return
        pw.execute_sql("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK_KEY,))
        # Held to commit unless a savepoint's rollback releases it: taken outside any savepoint (a
        # single write, or a batch, whose writes take none), it need not be taken again.
        if pw.transaction_depth() == 1:
            setattr(transaction, FEED_LOCKED, True)

    def append(self, event: ChangeEvent) -> None:
        """Called by the records service inside the write transaction, before it commits."""
        self.lock()
        data = orjson.dumps({"record": event.record, "previous": event.previous}).decode()
        # db.insert: the INSERT text is built once (peewee building it per write cost more than SQLite).
        row = {"created_at": utcnow(), "collection": event.collection, "action": event.action,
               "record_id": str(event.record.get("id")), "data": data}
        if not self.db.is_sqlite and self._deferred(row, event):
            return
        written = self.db.insert(self.model, row)
        cursor = written.lastrowid if self.db.is_sqlite else written.fetchone()[0]
        self._appended(Change(int(cursor), event.collection, event.action, event.record, event.previous))

    def _appended(self, change: Change) -> None:
        pw: Any = self.db.peewee
        if self.notify_in_transaction:
            pw.execute_sql("SELECT pg_notify(%s, %s)", (PG_CHANNEL, str(change.cursor)))
        if self.on_commit:
            self.db.after_commit(lambda: self._committed(change))

    def _deferred(self, row: dict[str, Any], event: ChangeEvent) -> bool:
        """In a batch on PostgreSQL, its feed rows go in as one INSERT just before its commit (one
        round trip for all of them, not one per change); False outside a batch."""
        transaction = self.db.peewee.top_transaction()  # type: ignore[no-untyped-call]
        pending: list[tuple[dict[str, Any], ChangeEvent]] | None = getattr(transaction, FEED_PENDING, None)
        if pending is None:
            rows: list[tuple[dict[str, Any], ChangeEvent]] = []
            if not self.db.before_commit(lambda: self._flush(rows)):
                return False
            setattr(transaction, FEED_PENDING, rows)
            pending = rows
        pending.append((row, event))
        return True

    def _flush(self, pending: list[tuple[dict[str, Any], ChangeEvent]]) -> None:
        """The deferred rows, in order, under the feed lock the batch holds: sequence values are
        handed out in the order of the rows, so the cursors come back ascending."""
        for start in range(0, len(pending), 500):
            chunk = pending[start:start + 500]
            query = self.model.insert_many([row for row, _ in chunk]).returning(self.model.id).tuples()
            cursors = sorted(int(found[0]) for found in query.execute())
            for cursor, (_, event) in zip(cursors, chunk, strict=True):
                self._appended(Change(cursor, event.collection, event.action, event.record, event.previous))

    def _committed(self, change: Change) -> None:
        for callback in self.on_commit:
            try:
                callback(change)
            except Exception:  # a broker hiccup must not fail a write that already committed
                log.exception("realtime: after-commit callback failed")
        now = time.monotonic()
        if now >= self._next_prune:
            # Every few seconds per process, a writer (on its own connection, its transaction done)
            # prunes: a worker that never holds a WebSocket still keeps the feed bounded.
            self._next_prune = now + PRUNE_EVERY_SECONDS
            try:
                self.prune()
            except peewee.PeeweeException:
                log.exception("realtime: pruning the change feed failed")

    def prune(self) -> int:
        """Drop changes older than the retention or beyond the row bound; the newest row always stays
        (SQLite hands out max(id)+1, so keeping it keeps cursors increasing).

        By cursor, not by time: the rows before the first one inside the retention go (found by
        walking from the oldest, so it reads about as many rows as it deletes). The table has no
        index on ``created_at``: one more index page written by every record write cost more than
        this walk (system migration 5). A row stamped late by a host whose clock runs ahead holds
        back the age pruning behind it until it expires; the row bound still applies."""
        m = self.model
        head = self.head()
        if not head:
            return 0
        cutoff = utcnow() - dt.timedelta(seconds=self.retention_seconds)
        first_kept = m.select(m.id).where(m.created_at >= cutoff).order_by(m.id).limit(1).scalar()
        bound = min(head, max(head - self.max_rows + 1, head if first_kept is None else int(first_kept)))
        with self.db.write():
            return int(m.delete().where(m.id < bound).execute())

    def head(self) -> int:
        """The cursor of the newest change (0 when the feed is empty)."""
        return int(self.model.select(peewee.fn.MAX(self.model.id)).scalar() or 0)

    def oldest(self) -> int:
        return int(self.model.select(peewee.fn.MIN(self.model.id)).scalar() or 0)

    def read_after(self, cursor: int, limit: int = READ_CHUNK) -> list[Change]:
        """Changes with a cursor above `cursor`, oldest first."""
        m = self.model
        rows = m.select(m.id, m.collection, m.action, m.data).where(m.id > cursor).order_by(m.id).limit(limit)
        changes = []
        for row in rows.tuples():
            data = orjson.loads(row[3])
            changes.append(Change(int(row[0]), row[1], row[2], data["record"], data.get("previous")))
        return changes

    def check_since(self, since: int) -> None:
        """Raise CursorExpired when `since` is older than what the feed retains, or from its future."""
        head, oldest = self.head(), self.oldest()
        if since > head:
            raise CursorExpired(f"Cursor {since} is not in the change feed (newest is {head}); take a new snapshot.")
        if oldest and since < oldest - 1:
            raise CursorExpired(f"Cursor {since} is older than the retained change feed (oldest is {oldest}); "
                                "take a new snapshot.")
