"""Realtime: the change feed, subscriptions decided by rules and filters, per-worker fan-out, the WebSocket session.

Every committed write appends one row to the change feed inside its own transaction (`feed`);
each worker's hub tails the feed, woken by the doorbell or a broker (`doorbell`, `brokers`), and
fans each batch out to the audiences of its own sockets (`hub`, `audience`, `client`, `frames`).
`service` is the facade the app holds; `websocket` drives one connection over simple_websocket.
"""
from __future__ import annotations

from alyx.models import FEED_TABLE, build_change_model
from alyx.realtime.audience import Audience, Subscription, check_subscribable, static_truth
from alyx.realtime.brokers import Broker, PostgresBroker, RedisBroker, open_broker
from alyx.realtime.client import Client
from alyx.realtime.doorbell import Doorbell
from alyx.realtime.feed import Change, ChangeFeed, CursorExpired
from alyx.realtime.frames import (
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_MANY_CONNECTIONS,
    delta_frame,
    error_frame,
    frame,
)
from alyx.realtime.hub import Hub, merge_changes
from alyx.realtime.service import Realtime
from alyx.realtime.websocket import TokenVerifier, authenticate_token, serve

__all__ = [
    "CLOSE_HEARTBEAT_TIMEOUT", "CLOSE_SLOW_CONSUMER", "CLOSE_TOO_MANY_CONNECTIONS", "FEED_TABLE", "Audience",
    "Broker", "Change", "ChangeFeed", "Client", "CursorExpired", "Doorbell", "Hub", "PostgresBroker", "Realtime",
    "RedisBroker", "Subscription", "TokenVerifier", "authenticate_token", "build_change_model",
    "check_subscribable", "delta_frame", "error_frame", "frame", "merge_changes", "open_broker", "serve",
    "static_truth",
]
