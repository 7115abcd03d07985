"""This worker's tailer and fan-out: follows the change feed and pushes deltas to its subscriptions.

Each worker process runs one tailer (a greenlet under gevent) that reads the feed past its
position — by polling, or at once when the doorbell or a broker says there is more — and fans
each batch out to the audiences of its own sockets, one delta frame per subscription.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

from alyx import cel
from alyx.background import Loop
from alyx.collection import Collection
from alyx.config import Config
from alyx.realtime.audience import Audience, Subscription
from alyx.realtime.brokers import Broker
from alyx.realtime.client import Client
from alyx.realtime.doorbell import Doorbell
from alyx.realtime.feed import READ_CHUNK, Change, ChangeFeed
from alyx.realtime.frames import delta_frame
from alyx.rules import AccessRules, Principal

log = logging.getLogger("alyx.realtime")

RECENT_CHANGES = 4096  # per worker, in memory: lets a subscriber catch up without a database read
BROKER_FALLBACK_SECONDS = 1.0  # with a broker, the feed is still read this often in case a message was lost
RETRY_SECONDS = 0.5  # after a failed tailer step


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


class Hub:
    """Follows the feed and pushes deltas to the subscriptions of this worker's clients."""

    def __init__(self, feed: ChangeFeed, config: Config, access: AccessRules, broker: Broker | None,
                 doorbell: Doorbell | None) -> None:
        self.feed = feed
        self.config = config
        self.access = access
        self.broker = broker
        self.doorbell = doorbell
        self.lock = threading.RLock()
        self.position = 0
        self.recent: deque[Change] = deque()
        self.recent_from = 0  # every change above this cursor up to `position` is in `recent`
        self.audiences: dict[tuple[Any, ...], Audience] = {}
        self.pending: dict[int, Change] = {}  # from the Redis broker, waiting for their turn
        self.started = False
        self.broker_ready = threading.Event()
        self.frames_sent = 0
        self.batches = 0
        idle = BROKER_FALLBACK_SECONDS if broker is not None else config.realtime_poll_interval_ms / 1000
        self._idle = idle
        self._coalesce = config.realtime_coalesce_ms / 1000
        self._rung = False  # poked since the last read of the feed began
        self._next_poll = 0.0
        self.tailer = Loop("alyx-realtime-tailer", self._tail, backoff=RETRY_SECONDS, max_backoff=RETRY_SECONDS)

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
            if self.doorbell is not None:
                try:
                    self.doorbell.listen(self.poke)
                except OSError as exc:
                    log.warning("realtime: no doorbell (%s); other workers' changes arrive by polling", exc)
            if self.broker is not None:
                self.broker.listen(self._from_broker, self.broker_ready)
            self._next_poll = time.monotonic() + self._idle
            self.tailer.start()

    def poke(self) -> None:
        """Something was committed: read the feed now instead of at the next poll."""
        self._rung = True
        self.tailer.wake()

    def _from_broker(self, change: Change | None) -> None:
        if change is not None and change.cursor > self.position:
            self.pending[change.cursor] = change
        self.poke()

    def _tail(self) -> float:
        """One tailer step: after a poke (and the coalescing window) or a poll interval, read on."""
        now = time.monotonic()
        if not self._rung and now < self._next_poll:
            return self._next_poll - now  # a poke already taken in by the last read: wait out the poll
        if self._coalesce:
            time.sleep(self._coalesce)  # pokes in this window are taken in by the read below
        self._rung = False
        self._next_poll = time.monotonic() + self._idle
        self.advance()
        return self._idle

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
                sub.client.push(delta_frame(sub.id, cursor, body))
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
        return found or Audience(key, coll, self.access, principal, where)
