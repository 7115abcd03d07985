"""Brokers that carry committed changes (or hints of them) to every worker: Redis pub/sub, LISTEN/NOTIFY.

A broker only makes delivery faster: the tailer still reads the feed, so a lost message costs a
poll interval, never a change.
"""
from __future__ import annotations

import contextlib
import logging
import select
import threading
import zlib
from collections.abc import Callable
from typing import Any

import psycopg2
import redis

from alyx.background import Loop
from alyx.config import Config
from alyx.db import Database
from alyx.errors import ConfigError
from alyx.realtime.feed import PG_CHANNEL, Change

log = logging.getLogger("alyx.realtime")

RETRY_SECONDS = 1.0  # after a lost broker connection
Deliver = Callable[[Change | None], None]  # a change, or None: "read the feed" (after a reconnect or a hint)


class BrokerBase:
    """What a broker does: publish a committed change, and listen in the background, one session at a
    time; a session that fails is logged and started again after RETRY_SECONDS."""

    name = "broker"

    def publish(self, change: Change) -> None:
        raise NotImplementedError

    def listen(self, deliver: Deliver, ready: threading.Event) -> Loop:
        """Start listening; each message (or hint) goes to `deliver` (None after each (re)connect)."""
        loop = Loop("alyx-realtime-broker", lambda: self._step(deliver, ready))
        loop.start()
        return loop

    def _step(self, deliver: Deliver, ready: threading.Event) -> float:
        with contextlib.ExitStack() as cleanup:
            try:
                self._session(deliver, ready, cleanup)
                return 0.0
            except Exception as exc:  # noqa: BLE001 - keep listening whatever the broker does
                log.warning("realtime: %s unavailable (%s); retrying", self.name, exc)
                return RETRY_SECONDS

    def _session(self, deliver: Deliver, ready: threading.Event, cleanup: contextlib.ExitStack) -> None:
        """Listen until the connection fails; register the connection's close on `cleanup`."""
        raise NotImplementedError


def _close_quietly(resource: Any) -> None:
    with contextlib.suppress(Exception):
        resource.close()


class RedisBroker(BrokerBase):
    """Fan-out through Redis pub/sub: each committed change is published once, every worker receives it."""

    name = "Redis broker"

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def publish(self, change: Change) -> None:
        self.client.publish(self.channel, change.to_json())

    def _session(self, deliver: Deliver, ready: threading.Event, cleanup: contextlib.ExitStack) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=5, health_check_interval=30)
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        cleanup.callback(_close_quietly, pubsub)
        pubsub.subscribe(self.channel)
        ready.set()
        deliver(None)
        for message in pubsub.listen():
            if message.get("type") == "message":
                try:
                    deliver(Change.from_json(message["data"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("realtime: ignoring a malformed broker message")


class PostgresBroker(BrokerBase):
    """Fan-out hints through PostgreSQL LISTEN/NOTIFY: NOTIFY is sent at commit, the tailer then reads the feed."""

    name = "PostgreSQL LISTEN"

    def __init__(self, database_url: str) -> None:
        self.dsn = database_url.replace("postgresql+pool://", "postgresql://").replace("postgres+pool://",
                                                                                      "postgresql://")

    def publish(self, change: Change) -> None:  # the NOTIFY went out with the transaction
        pass

    def _session(self, deliver: Deliver, ready: threading.Event, cleanup: contextlib.ExitStack) -> None:
        conn: Any = psycopg2.connect(self.dsn)
        cleanup.callback(_close_quietly, conn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {PG_CHANNEL}")
        ready.set()
        deliver(None)
        while True:
            select.select([conn], [], [], 30)
            conn.poll()
            if conn.notifies:
                conn.notifies.clear()
                deliver(None)


Broker = RedisBroker | PostgresBroker


def open_broker(config: Config, db: Database) -> Broker | None:
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
