"""Realtime: the change feed (`_alyx_changes`), subscriptions decided by rules and filters, per-worker fan-out.

Every committed write appends one row to the change feed inside its own transaction, so the feed's
cursor orders changes exactly as they committed. Each worker process runs one tailer (a greenlet
under gevent) that reads the feed past its position — by polling, or when a broker (Redis pub/sub,
PostgreSQL LISTEN/NOTIFY) says there is more — and fans each batch out to the subscriptions of its
own sockets. The database stays the source of truth: a broker only makes delivery faster, and a
lost broker message is caught up from the feed.

Knows nothing of Flask or of WebSocket frames on the wire: the blueprint drives a `Client`.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import itertools
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import peewee

from alyx import cel
from alyx import query as q
from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database
from alyx.errors import AlyxError, ConfigError, bad_request
from alyx.records import ChangeEvent, Collection, Records
from alyx.rules import AccessRules, Principal, RequestInfo, _RuleNames
from alyx.validation import parse_datetime

log = logging.getLogger("alyx.realtime")

FEED_TABLE = "_alyx_changes"
FEED_LOCK_KEY = zlib.crc32(b"alyx-change-feed")  # PostgreSQL advisory lock: feed rows commit in cursor order
PG_CHANNEL = "alyx_changes"
READ_CHUNK = 1000
RECENT_CHANGES = 4096  # per worker, in memory: lets a subscriber catch up without a database read
BROKER_FALLBACK_SECONDS = 1.0  # with a broker, the feed is still read this often in case a message was lost
PRUNE_EVERY_SECONDS = 10.0

# Close codes sent to clients (RFC 6455 and its registry).
CLOSE_TOO_MANY_CONNECTIONS = 1013  # try again later
CLOSE_SLOW_CONSUMER = 1008  # policy violation: the send queue went over its bound
CLOSE_HEARTBEAT_TIMEOUT = 1001  # going away: no pong to the last ping


def build_change_model(database: peewee.Database) -> type[peewee.Model]:
    """The change feed table: one row per committed write, `id` is the cursor."""

    class Change(peewee.Model):
        id = peewee.BigAutoField()
        created_at = peewee.DateTimeField(default=utcnow, index=True)
        collection = peewee.TextField()
        action = peewee.TextField()
        record_id = peewee.TextField()
        data = peewee.TextField()  # JSON: {"record": {...}, "previous": {...} | null}

        class Meta:
            table_name = FEED_TABLE

    Change._meta.set_database(database)
    return Change


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


# -- the change feed ------------------------------------------------------------------------------
class ChangeFeed:
    """Appends changes inside the write transaction, reads them back in cursor order, prunes old ones."""

    def __init__(self, db: Database, retention_seconds: int, max_rows: int) -> None:
        self.db = db
        self.model = build_change_model(db.peewee)
        self.retention_seconds = retention_seconds
        self.max_rows = max(max_rows, 1)
        self.on_commit: list[Callable[[Change], None]] = []
        self.notify_in_transaction = False  # PostgreSQL LISTEN/NOTIFY broker
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS

    def install(self) -> None:
        """Create the feed table if it is missing (safe to run from every process)."""
        self.db.peewee.create_tables([self.model], safe=True)

    def append(self, event: ChangeEvent) -> None:
        """Called by the records service inside the write transaction, before it commits."""
        pw = self.db.peewee
        if not self.db.is_sqlite:
            # Sequence values are handed out at insert, not at commit: serialise feed inserts until
            # commit so that a reader never sees cursor N+1 before N (SQLite's write lock does this).
            pw.execute_sql("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK_KEY,))
        data = orjson.dumps({"record": event.record, "previous": event.previous}).decode()
        # db.insert: the INSERT text is built once (peewee building it per write cost more than SQLite).
        row = {"created_at": utcnow(), "collection": event.collection, "action": event.action,
               "record_id": str(event.record.get("id")), "data": data}
        written = self.db.insert(self.model, row)
        cursor = written.lastrowid if self.db.is_sqlite else written.fetchone()[0]
        change = Change(int(cursor), event.collection, event.action, event.record, event.previous)
        if self.notify_in_transaction:
            pw.execute_sql("SELECT pg_notify(%s, %s)", (PG_CHANNEL, str(change.cursor)))
        if self.on_commit:
            pw.after_commit(lambda: self._committed(change))

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
        (SQLite hands out max(id)+1, so keeping it keeps cursors increasing)."""
        m = self.model
        head = self.head()
        if not head:
            return 0
        cutoff = utcnow() - dt.timedelta(seconds=self.retention_seconds)
        with self.db.write():
            return m.delete().where((m.id < head) & ((m.id <= head - self.max_rows) | (m.created_at < cutoff))
                                    ).execute()

    def head(self) -> int:
        """The cursor of the newest change (0 when the feed is empty)."""
        return self.model.select(peewee.fn.MAX(self.model.id)).scalar() or 0

    def oldest(self) -> int:
        return self.model.select(peewee.fn.MIN(self.model.id)).scalar() or 0

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


# -- brokers ------------------------------------------------------------------------------------
class RedisBroker:
    """Fan-out through Redis pub/sub: each committed change is published once, every worker receives it."""

    def __init__(self, url: str, channel: str) -> None:
        import redis

        self.url = url
        self.channel = channel
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def publish(self, change: Change) -> None:
        self.client.publish(self.channel, change.to_json())

    def listen(self, deliver: Callable[[Change | None], None], ready: threading.Event) -> None:
        """Forever: subscribe and hand every message to `deliver` (None after a reconnect: re-read the feed)."""
        import redis

        while True:
            pubsub = None
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=5, health_check_interval=30)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                ready.set()
                deliver(None)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        try:
                            deliver(Change.from_json(message["data"]))
                        except (ValueError, KeyError, TypeError):
                            log.warning("realtime: ignoring a malformed broker message")
            except Exception as exc:  # noqa: BLE001 - keep listening whatever the broker does
                log.warning("realtime: Redis broker unavailable (%s); retrying", exc)
                time.sleep(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass


class PostgresBroker:
    """Fan-out hints through PostgreSQL LISTEN/NOTIFY: NOTIFY is sent at commit, the tailer then reads the feed."""

    def __init__(self, database_url: str) -> None:
        self.dsn = database_url.replace("postgresql+pool://", "postgresql://").replace("postgres+pool://",
                                                                                      "postgresql://")

    def publish(self, change: Change) -> None:  # the NOTIFY went out with the transaction
        pass

    def listen(self, deliver: Callable[[Change | None], None], ready: threading.Event) -> None:
        import select

        import psycopg2

        while True:
            conn = None
            try:
                conn = psycopg2.connect(self.dsn)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {PG_CHANNEL}")
                ready.set()
                deliver(None)
                while True:
                    readable, _, _ = select.select([conn], [], [], 30)
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        deliver(None)
            except Exception as exc:  # noqa: BLE001
                log.warning("realtime: PostgreSQL LISTEN failed (%s); retrying", exc)
                time.sleep(1.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass


def open_broker(config: Config, db: Database) -> RedisBroker | PostgresBroker | None:
    """`realtime.broker`: unset (poll the feed), `redis://...`, or `postgres` (LISTEN/NOTIFY)."""
    url = config.realtime_broker
    if not url:
        return None
    if url.startswith(("redis://", "rediss://", "unix://")):
        channel = "alyx:changes:" + format(zlib.crc32(config.database_display.encode()), "08x")
        return RedisBroker(url, channel)
    if url in ("postgres", "postgresql"):
        if db.is_sqlite or not config.database_url:
            raise ConfigError("realtime.broker: 'postgres' (LISTEN/NOTIFY) needs database.url to be PostgreSQL")
        return PostgresBroker(config.database_url)
    raise ConfigError(f"realtime.broker: expected redis://HOST:PORT/DB or 'postgres', got {url!r}")


class Doorbell:
    """Wakes the tailers of the other workers on this host at once (instead of at their next poll).

    Each worker with a tailer binds a Unix datagram socket in a directory named after the
    database; a writer sends one byte to every socket there after its commit. Best effort: a
    missed ring costs one poll interval, never a change.
    """

    def __init__(self, database_display: str) -> None:
        self.dir = os.path.join(tempfile.gettempdir(), "alyx-rt-" + format(zlib.crc32(database_display.encode()),
                                                                           "08x"))
        self.path: str | None = None
        self.sock: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_at = 0.0
        self._sender: socket.socket | None = None

    def listen(self, on_ring: Callable[[], None]) -> None:
        """Bind this process's socket and call `on_ring` for every ring (runs in a daemon thread)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.dir, f"{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        self.sock = sock
        atexit.register(self._forget, self.path)

        def loop() -> None:
            while True:
                try:
                    sock.recv(64)
                except OSError:
                    time.sleep(0.5)
                    continue
                on_ring()

        threading.Thread(target=loop, daemon=True, name="alyx-realtime-doorbell").start()

    @staticmethod
    def _forget(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # only when no other worker is bound there

    def ring(self) -> None:
        now = time.monotonic()
        if now - self._peers_at > 1.0:
            try:
                self._peers = [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n.endswith(".sock")]
            except FileNotFoundError:
                self._peers = []
            self._peers_at = now
        if not self._peers:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for peer in self._peers:
            if peer == self.path:
                continue
            try:
                self._sender.sendto(b"!", peer)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(peer)  # a worker that is gone
                self._peers_at = 0.0
            except OSError:
                pass  # its queue is full: it is awake anyway


# -- who sees what --------------------------------------------------------------------------------
class Audience:
    """Subscriptions that see the same thing: one collection, one principal, one filter."""

    def __init__(self, key: tuple[Any, ...], coll: Collection, access: AccessRules, principal: Principal | None,
                 where: cel.Node | None) -> None:
        self.key = key
        self.coll = coll
        self.access = access
        self.principal = principal
        self.where = where
        self.subs: set[Subscription] = set()

    def visible(self, change: Change, doc: dict[str, Any] | None) -> bool:
        """Whether this audience may see `doc` (a state of the changed record) and it passes the filter."""
        if doc is None:
            return False
        typed = change.typed.get(id(doc))
        if typed is None:
            typed = change.typed[id(doc)] = _typed(self.coll, doc)
        name = self.coll.spec.name
        request = RequestInfo()
        if not (self.access.allows(name, "list", self.principal, typed, request)
                and self.access.allows(name, "view", self.principal, typed, request)):
            return False
        if self.where is None:
            return True
        try:
            return cel.Evaluator(lambda path: typed.get(path[0])).truth(self.where)
        except (cel.CelError, TypeError, ValueError):
            return False

    def verdict(self, change: Change) -> tuple[str, Any] | None:
        """What this audience should be told about a change: insert/update (doc), delete (id), or nothing."""
        if change.action == "create":
            return ("insert", change.record) if self.visible(change, change.record) else None
        if change.action == "delete":
            return ("delete", change.record.get("id")) if self.visible(change, change.record) else None
        now = self.visible(change, change.record)
        before = self.visible(change, change.previous) if change.previous is not None else now
        if now:
            return ("update" if before else "insert", change.record)
        return ("delete", change.record.get("id")) if before else None


def _typed(coll: Collection, doc: dict[str, Any]) -> dict[str, Any]:
    """A serialised record with its datetime/date strings parsed back, as rules and filters compare them."""
    out = dict(doc)
    for name in coll.dates:
        value = out.get(name)
        if isinstance(value, str):
            if q.field_type(coll.spec, name) == "date":
                try:
                    out[name] = dt.date.fromisoformat(value)
                except ValueError:
                    pass
            else:
                out[name] = parse_datetime(value) or value
    return out


def _static_truth(node: cel.Node, names: _RuleNames) -> bool | None:
    """A rule's value when it does not depend on the record (auth/request only), else None (unknown)."""
    if isinstance(node, cel.BoolOp):
        left, right = _static_truth(node.left, names), _static_truth(node.right, names)
        if node.op == "&&":
            return False if False in (left, right) else (True if left is True and right is True else None)
        return True if True in (left, right) else (False if left is False and right is False else None)
    if isinstance(node, cel.Not):
        value = _static_truth(node.operand, names)
        return None if value is None else not value
    if any(path[0] == "doc" for path in cel.names_in(node)):
        return None
    try:
        return cel.Evaluator(lambda path: names(path).value).truth(node)
    except (cel.CelError, TypeError, ValueError, AttributeError):
        return None


def merge_changes(verdicts: Iterable[tuple[str, Any]]) -> dict[str, list[Any]] | None:
    """Coalesce a run of verdicts into one delta's changes (last state of each record wins)."""
    state: dict[str, tuple[str, Any]] = {}
    for kind, value in verdicts:
        rid = value if kind == "delete" else value.get("id")
        prior = state.get(rid)
        if prior is None:
            state[rid] = (kind, value)
        elif prior[0] == "insert":
            if kind == "delete":
                del state[rid]  # the client never saw it
            else:
                state[rid] = ("insert", value)
        elif prior[0] == "delete" and kind in ("insert", "update"):
            state[rid] = ("update", value)
        else:
            state[rid] = (kind, value)
    if not state:
        return None
    changes: dict[str, list[Any]] = {"inserts": [], "updates": [], "deletes": []}
    for kind, value in state.values():
        changes[kind + "s"].append(value)
    return changes


@dataclass(eq=False)
class Subscription:
    """One live query of one client."""

    id: str
    client: Client
    audience: Audience
    cursor: int = 0  # every change up to here has been considered for this subscription


class Client:
    """One WebSocket connection's state: who it is, its subscriptions and its bounded send queue."""

    def __init__(self, realtime: Realtime, client_id: str, wake: Callable[[], None]) -> None:
        self.realtime = realtime
        self.id = client_id
        self.wake = wake
        self.principal: Principal | None = None
        self.token_expires_at: float | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: deque[bytes] = deque()
        # Set by the transport when it can write a frame at once without blocking (True = written);
        # then a frame costs no wake-up of the connection's greenlet.
        self.send_now: Callable[[bytes], bool] | None = None
        self.close_request: tuple[int, str] | None = None
        self._ids = itertools.count(1)

    def push(self, frame: bytes) -> None:
        """Queue one frame; a queue over its bound marks the client as a slow consumer to disconnect."""
        if self.close_request is not None:
            return
        if not self.outbox and self.send_now is not None and self.send_now(frame):
            return
        self.outbox.append(frame)
        if len(self.outbox) > self.realtime.config.realtime_send_queue_max:
            self.outbox.clear()
            self.close_request = (CLOSE_SLOW_CONSUMER, "slow consumer: send queue over its bound")
            self.realtime.hub.detach_client(self)
        self.wake()

    def next_subscription_id(self) -> str:
        return f"s{next(self._ids)}"


def frame(type_: str, payload: dict[str, Any] | None = None, request_id: Any = None) -> bytes:
    """One JSON frame {"id"?, "type", "payload"?}."""
    out: dict[str, Any] = {}
    if request_id is not None:
        out["id"] = request_id
    out["type"] = type_
    if payload is not None:
        out["payload"] = payload
    return orjson.dumps(out)


def _delta_frame(sub_id: str, cursor: int, changes_json: bytes) -> bytes:
    return b"".join((b'{"type":"delta","payload":{"subscription_id":', orjson.dumps(sub_id), b',"cursor":',
                     str(cursor).encode(), b',"changes":', changes_json, b"}}"))


# -- the per-worker hub -----------------------------------------------------------------------------
class Hub:
    """This worker's tailer and fan-out: follows the feed and pushes deltas to its clients' subscriptions."""

    def __init__(self, realtime: Realtime) -> None:
        self.realtime = realtime
        self.feed = realtime.feed
        self.lock = threading.RLock()
        self.wakeup = threading.Event()
        self.position = 0
        self.recent: deque[Change] = deque()
        self.recent_from = 0  # every change above this cursor up to `position` is in `recent`
        self.audiences: dict[tuple[Any, ...], Audience] = {}
        self.pending: dict[int, Change] = {}  # from the Redis broker, waiting for their turn
        self.started = False
        self.broker_ready = threading.Event()
        self.frames_sent = 0
        self.batches = 0

    # -- lifecycle
    def ensure_started(self) -> None:
        """Start this process's tailer (first connection of a worker; never at import, never in the master)."""
        if self.started:
            return
        with self.lock:
            if self.started:
                return
            with self.feed.db.connection():
                self.position = self.recent_from = self.feed.head()
            self.started = True
            broker = self.realtime.broker
            if self.realtime.doorbell is not None:
                try:
                    self.realtime.doorbell.listen(self.poke)
                except OSError as exc:
                    log.warning("realtime: no doorbell (%s); other workers' changes arrive by polling", exc)
            if broker is not None:
                threading.Thread(target=broker.listen, args=(self._from_broker, self.broker_ready),
                                 daemon=True, name="alyx-realtime-broker").start()
            threading.Thread(target=self._run, daemon=True, name="alyx-realtime-tailer").start()

    def poke(self) -> None:
        """Something was committed: read the feed now instead of at the next poll."""
        self.wakeup.set()

    def _from_broker(self, change: Change | None) -> None:
        if change is not None and change.cursor > self.position:
            self.pending[change.cursor] = change
        self.wakeup.set()

    def _run(self) -> None:
        config = self.realtime.config
        idle = BROKER_FALLBACK_SECONDS if self.realtime.broker is not None else config.realtime_poll_interval_ms / 1000
        coalesce = config.realtime_coalesce_ms / 1000
        while True:
            try:
                self.wakeup.wait(timeout=idle)
                if coalesce:
                    time.sleep(coalesce)
                self.wakeup.clear()
                self.advance()
            except Exception:
                log.exception("realtime: tailer step failed; retrying")
                time.sleep(0.5)

    def advance(self) -> None:
        """Dispatch what comes next: broker messages in cursor order, else (on a gap or a poll) the feed."""
        batch: list[Change] = []
        nxt = self.position + 1
        while nxt in self.pending:
            batch.append(self.pending.pop(nxt))
            nxt += 1
        if batch and not self.pending:
            self.dispatch(batch)
            return
        if batch:
            self.dispatch(batch)
        for stale in [c for c in self.pending if c <= self.position]:
            del self.pending[stale]
        with self.feed.db.connection():
            while True:
                changes = self.feed.read_after(self.position)
                if not changes:
                    break
                self.dispatch(changes)
                if len(changes) < READ_CHUNK:
                    break
        for stale in [c for c in self.pending if c <= self.position]:
            del self.pending[stale]

    def dispatch(self, changes: list[Change]) -> None:
        """Fan a batch out: one delta frame per subscription that sees something in it."""
        changes = [c for c in changes if c.cursor > self.position]
        if not changes:
            return
        with self.lock:
            for change in changes:
                self.recent.append(change)
            while len(self.recent) > RECENT_CHANGES:
                self.recent_from = self.recent.popleft().cursor
            self.position = changes[-1].cursor
            self.batches += 1
            by_collection: dict[str, list[Change]] = {}
            for change in changes:
                by_collection.setdefault(change.collection, []).append(change)
            for audience in list(self.audiences.values()):
                mine = by_collection.get(audience.coll.spec.name)
                if not mine or not audience.subs:
                    continue
                self._deliver(audience, list(audience.subs), mine, self.position)

    def _deliver(self, audience: Audience, subs: list[Subscription], changes: list[Change], cursor: int) -> None:
        verdicts: list[tuple[int, tuple[str, Any]]] = []
        name = audience.coll.spec.name
        for change in changes:
            if change.collection != name:
                continue
            verdict = audience.verdict(change)
            if verdict is not None:
                verdicts.append((change.cursor, verdict))
        encoded: dict[int, bytes | None] = {}
        for sub in subs:
            since = sub.cursor
            sub.cursor = max(sub.cursor, cursor)
            if since not in encoded:
                merged = merge_changes(v for c, v in verdicts if c > since)
                encoded[since] = orjson.dumps(merged) if merged else None
            body = encoded[since]
            if body is not None:
                sub.client.push(_delta_frame(sub.id, cursor, body))
                self.frames_sent += 1

    # -- subscriptions
    def attach(self, sub: Subscription, since: int) -> None:
        """Deliver what `sub` missed after `since` (from memory, else the feed), then make it live.

        Runs in the client's greenlet; the replay and the registration happen under the lock, so no
        live change can slip between them or arrive twice."""
        cursor = since
        while True:
            with self.lock:
                if cursor >= self.recent_from or cursor >= self.position:
                    missed = [c for c in self.recent if c.cursor > cursor]
                    sub.cursor = cursor
                    if missed:
                        self._deliver(sub.audience, [sub], missed, missed[-1].cursor)
                    sub.cursor = max(cursor, self.position)
                    self._register(sub)
                    return
            with self.feed.db.connection():
                changes = self.feed.read_after(cursor)
            if not changes:
                with self.lock:
                    sub.cursor = max(cursor, self.position)
                    self._register(sub)
                return
            with self.lock:
                sub.cursor = cursor
                self._deliver(sub.audience, [sub], changes, changes[-1].cursor)
            cursor = changes[-1].cursor

    def _register(self, sub: Subscription) -> None:
        """Make `sub` live (under the lock), joining the audience already registered for its key, if any."""
        existing = self.audiences.get(sub.audience.key)
        if existing is not None and existing is not sub.audience:
            sub.audience = existing  # two subscribers raced to create it: one audience, evaluated once
        sub.audience.subs.add(sub)
        self.audiences[sub.audience.key] = sub.audience

    def detach(self, sub: Subscription) -> None:
        with self.lock:
            audience = sub.audience
            audience.subs.discard(sub)
            if not audience.subs and self.audiences.get(audience.key) is audience:
                del self.audiences[audience.key]

    def detach_client(self, client: Client) -> None:
        for sub in list(client.subscriptions.values()):
            self.detach(sub)
        client.subscriptions.clear()

    def audience_for(self, coll: Collection, principal: Principal | None, filter_text: str | None,
                     where: cel.Node | None) -> Audience:
        key = (coll.spec.name, principal, filter_text or "")
        with self.lock:
            found = self.audiences.get(key)
        return found or Audience(key, coll, self.realtime.access, principal, where)


# -- the service ----------------------------------------------------------------------------------
class Realtime:
    """The realtime service of one process: the feed writer, the hub, clients and their limits."""

    def __init__(self, config: Config, db: Database, records: Records, access: AccessRules) -> None:
        self.config = config
        self.db = db
        self.records = records
        self.access = access
        self.feed = ChangeFeed(db, config.realtime_feed_retention_seconds, config.realtime_feed_max_rows)
        self.broker = open_broker(config, db)
        self.hub = Hub(self)
        self.doorbell: Doorbell | None = None
        self.clients: dict[str, Client] = {}
        self.node = secrets.token_hex(3)  # tells this worker's client ids apart from other workers'
        self._client_ids = itertools.count(1)
        # feed.append is registered as a journal writer by build_services (alyx/services.py).
        if isinstance(self.broker, PostgresBroker):
            self.feed.notify_in_transaction = True
        elif isinstance(self.broker, RedisBroker):
            self.feed.on_commit.append(self.broker.publish)
        else:
            self.doorbell = Doorbell(config.database_display)
            self.feed.on_commit.append(self._committed_locally)

    def install(self) -> None:
        self.feed.install()

    def _committed_locally(self, change: Change) -> None:
        self.hub.poke()
        if self.doorbell is not None:
            self.doorbell.ring()

    # -- connections
    def connect(self, wake: Callable[[], None]) -> Client:
        """Register a new connection (AlyxError too_many_connections past the per-worker bound)."""
        if len(self.clients) >= self.config.realtime_max_connections:
            raise AlyxError("too_many_connections",
                            f"This server holds its maximum of {self.config.realtime_max_connections} "
                            "realtime connections; retry later.", 503)
        self.hub.ensure_started()
        client = Client(self, f"{self.node}-{next(self._client_ids)}", wake)
        self.clients[client.id] = client
        return client

    def disconnect(self, client: Client) -> None:
        self.hub.detach_client(client)
        self.clients.pop(client.id, None)

    def authenticate(self, client: Client, principal: Principal | None, expires_at: float | None) -> None:
        """Set who the client is; subscriptions made as someone else end (their rules no longer apply)."""
        if client.principal != principal and client.subscriptions:
            for sub in list(client.subscriptions.values()):
                self.unsubscribe(client, sub.id)
                client.push(frame("error", {"code": "subscription_closed", "subscription_id": sub.id,
                                            "message": "Signed in as someone else: subscribe again."}))
        client.principal = principal
        client.token_expires_at = expires_at

    def expire(self, client: Client) -> None:
        """The client's token expired: its subscriptions end with an error, the connection stays anonymous."""
        ended = list(client.subscriptions)
        for sub_id in ended:
            self.unsubscribe(client, sub_id)
        client.principal = None
        client.token_expires_at = None
        client.push(frame("error", {"code": "token_expired", "subscription_ids": ended,
                                    "message": "The access token expired: send a new auth frame, then subscribe "
                                               "again with since=<last cursor>."}))

    # -- subscriptions
    def subscribe(self, client: Client, payload: Any, request_id: Any = None) -> None:
        """Check, snapshot (or resume from `since`), then make live; replies are pushed to the client."""
        if not isinstance(payload, dict):
            raise bad_request("subscribe needs a payload object {collection, filter?, sort?, limit?, since?}.")
        name = payload.get("collection")
        if not isinstance(name, str) or not name:
            raise bad_request("subscribe needs a collection name.")
        if len(client.subscriptions) >= self.config.realtime_max_subscriptions:
            raise AlyxError("too_many_subscriptions", f"A connection may hold at most "
                            f"{self.config.realtime_max_subscriptions} subscriptions.", 429)
        coll = self.records.collection(name)  # 404 not_found for an unknown collection
        self._check_access(coll, client.principal)
        filter_text, sort, limit, since = (payload.get("filter"), payload.get("sort"), payload.get("limit"),
                                           payload.get("since"))
        args: dict[str, str] = {}
        for key, value in (("filter", filter_text), ("sort", sort)):
            if value is not None:
                if not isinstance(value, str):
                    raise bad_request(f"{key} must be a string.")
                args[key] = value
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise bad_request("limit must be a positive integer.")
            args["perPage"] = str(limit)
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise bad_request("since must be a cursor (a non-negative integer) from an earlier snapshot or delta.")
        lq = q.parse_list_query(coll.spec, args, self.records.default_per_page, self.records.max_per_page)
        where = lq.where[0] if lq.where else None
        audience = self.hub.audience_for(coll, client.principal, filter_text, where)
        sub = Subscription(client.next_subscription_id(), client, audience)
        if since is not None:
            with self.db.connection():
                self.feed.check_since(since)
            start = since
            reply = {"subscription_id": sub.id, "docs": [], "total": None, "cursor": since, "resumed": True}
        else:
            reply, start = self._snapshot(coll, lq, client.principal, sub.id)
        client.subscriptions[sub.id] = sub
        client.push(frame("snapshot", reply, request_id))
        try:
            self.hub.attach(sub, start)
        except BaseException:
            client.subscriptions.pop(sub.id, None)
            self.hub.detach(sub)
            raise

    def unsubscribe(self, client: Client, sub_id: Any) -> None:
        sub = client.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if sub is None:
            raise AlyxError("not_found", f"No subscription {str(sub_id)[:40]!r} on this connection.", 404)
        self.hub.detach(sub)

    def _check_access(self, coll: Collection, principal: Principal | None) -> None:
        """Refuse a subscription the list/view rules can never let through for this principal."""
        if principal is not None and principal.is_admin:
            return
        names = _RuleNames(coll.spec, None, principal, None)
        for op in ("list", "view"):
            rule = self.access.rule(coll.spec.name, op)
            if rule.node is None or _static_truth(rule.node, names) is False:
                if principal is None:
                    raise AlyxError("unauthorized", f"Sign in to subscribe to {coll.spec.name!r}.", 401)
                raise AlyxError("forbidden", f"You are not allowed to subscribe to {coll.spec.name!r}.", 403)

    def _snapshot(self, coll: Collection, lq: q.ListQuery, principal: Principal | None, sub_id: str
                  ) -> tuple[dict[str, Any], int]:
        """The first page the subscription matches, and the feed cursor it is consistent with."""
        postgres = not self.db.is_sqlite
        conditions = q.compile_where(lq, coll.spec, coll.model, postgres)
        tests = []
        for op in ("list", "view"):
            visibility = self.access.visibility(coll.spec.name, op, principal)
            if visibility.sql is not None:
                conditions.append(visibility.sql)
            if visibility.test is not None:  # a rule SQL cannot express: checked row by row
                tests.append(visibility.test)
        model = coll.model
        query = model.select(*coll.visible_columns)
        counter = model.select()
        if conditions:
            query, counter = query.where(*conditions), counter.where(*conditions)
        order = [(model._meta.fields[f].desc() if desc else model._meta.fields[f]) for f, desc in lq.sort]
        if not any(f == "id" for f, _ in lq.sort):
            order.append(coll.id_column)
        # A read transaction (DEFERRED on SQLite: it must not take the write lock the database's
        # IMMEDIATE default would take); its first read fixes the snapshot both queries see.
        with self.db.connection(), self.db.peewee.atomic(**({} if postgres else {"lock_type": "DEFERRED"})):
            if postgres:
                self.db.peewee.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor = self.feed.head()
            if tests:
                rows = [row for row in query.order_by(*order).dicts() if all(test(row) for test in tests)]
                total = len(rows)
                rows = rows[:lq.per_page]
            else:
                rows = list(query.order_by(*order).limit(lq.per_page).dicts())
                total = counter.count()
        docs = [coll.serialize(row) for row in rows]
        return {"subscription_id": sub_id, "docs": docs, "total": total, "cursor": cursor}, cursor

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self.clients), "position": self.hub.position,
                "audiences": len(self.hub.audiences), "frames_sent": self.hub.frames_sent,
                "batches": self.hub.batches}
