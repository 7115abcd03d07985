"""One WebSocket connection's state: who it is, its subscriptions and its bounded send queue."""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Protocol

from alyx.config import Config
from alyx.realtime.audience import Subscription
from alyx.realtime.frames import CLOSE_SLOW_CONSUMER
from alyx.rules import Principal


class Host(Protocol):
    """What a client needs of the realtime service that made it."""

    config: Config

    def end_subscriptions(self, client: Client) -> None: ...


class Client:
    """The transport drains `outbox` (or `send_now` writes at once); the service fills it."""

    def __init__(self, realtime: Host, client_id: str, wake: Callable[[], None]) -> None:
        self.realtime = realtime
        self.id = client_id
        self.wake = wake
        self.principal: Principal | None = None
        self.token_expires_at: float | None = None
        self.token: str | None = None  # the access token it signed in with: its session is re-checked
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: deque[bytes] = deque()
        # Set by the transport when it can write a frame at once without blocking (True = written);
        # then a frame costs no wake-up of the connection's greenlet.
        self.send_now: Callable[[bytes], bool] | None = None
        self.close_request: tuple[int, str] | None = None
        # Set by the transport: called once when the send queue goes over its bound, so a write blocked on
        # this client is cut soon instead of when it would time out.
        self.on_overflow: Callable[[], None] | None = None
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
            self.realtime.end_subscriptions(self)
            if self.on_overflow is not None:
                self.on_overflow()
        self.wake()

    def next_subscription_id(self) -> str:
        return f"s{next(self._ids)}"
