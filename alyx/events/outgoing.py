"""Outgoing webhooks: the ``webhooks:`` of alyx.yaml, and one signed POST of a collection event to a receiver."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from alyx.sandbox.manifest import ACTIONS
from alyx.signatures import sign, sign_plain
from alyx.units import DURATION_HINT, parse_duration
from alyx.yamlfile import Reader, describe, expand_env

DEFAULT_SIGNATURE_HEADER = "X-Alyx-Signature"
OUTGOING_KEYS = {"name", "url", "secret", "collections", "actions", "header", "style", "retries", "timeout_seconds"}


@dataclass(frozen=True)
class OutgoingWebhook:
    """One `webhooks:` entry of alyx.yaml: collection events POSTed, signed, to an external URL."""

    name: str
    url: str
    secret: str
    collections: frozenset[str] | None  # None: every collection
    actions: frozenset[str]
    header: str = DEFAULT_SIGNATURE_HEADER
    style: str = "timestamped"  # timestamped: t=<unix>,v1=<hex> | plain: sha256=<hex>
    retries: int | None = None
    timeout_seconds: float = 10.0

    def matches(self, collection: str, action: str) -> bool:
        return action in self.actions and (self.collections is None or collection in self.collections)


def parse_outgoing(entries: list[Any] | None, environ: Mapping[str, str],
                   path: str = "alyx.yaml") -> dict[str, OutgoingWebhook]:
    """alyx.yaml ``webhooks:`` → OutgoingWebhooks by name (ConfigError ``<path>:<line>: webhooks[i]: ...``)."""
    reader = Reader(path)
    hooks: dict[str, OutgoingWebhook] = {}
    for index, entry in enumerate(entries or []):
        at = f"webhooks[{index}]"
        if not isinstance(entry, dict):
            reader.fail(None, at, f"must be a mapping with url and secret, got {describe(entry)}")
        reader.mapping(entry, at, OUTGOING_KEYS)
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            reader.fail(entry, at, f"url must be an http(s) URL, got {url!r}", key="url")
        secret = expand_env(entry.get("secret"), environ)
        if not secret:
            reader.fail(entry, at, "secret is required (receivers check the signature with it)", key="secret")
        name = str(entry.get("name") or f"webhook{index}")
        if name in hooks:
            reader.fail(entry, at, f"two webhooks are named {name!r}", key="name")
        collections = entry.get("collections")
        if collections is not None and (not isinstance(collections, list) or
                                        not all(isinstance(c, str) for c in collections)):
            reader.fail(entry, at, "collections must be a list of collection names", key="collections")
        actions = entry.get("actions") or ["insert", "update", "delete"]
        if not isinstance(actions, list) or any(not isinstance(a, str) or a not in ACTIONS for a in actions):
            reader.fail(entry, at, "actions must be a list of insert, update, delete", key="actions")
        style = entry.get("style", "timestamped")
        if style not in ("timestamped", "plain"):
            reader.fail(entry, at, "style must be timestamped or plain", key="style")
        retries = entry.get("retries")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            reader.fail(entry, at, "retries must be a whole number >= 0", key="retries")
        try:
            timeout = parse_duration(entry.get("timeout_seconds") or 10.0)
        except ValueError:
            reader.fail(entry, at, f"timeout_seconds must be a duration ({DURATION_HINT})", key="timeout_seconds")
        hooks[name] = OutgoingWebhook(name, url, secret, frozenset(collections) if collections is not None else None,
                                      frozenset(ACTIONS[a] for a in actions),
                                      str(entry.get("header") or DEFAULT_SIGNATURE_HEADER), style, retries, timeout)
    return hooks


@dataclass(frozen=True)
class Delivery:
    """What one POST to a receiver came to (``problem`` None: a 2xx answer)."""

    status: int  # 0: no answer (connection refused, timeout)
    body: bytes
    problem: str | None
    duration_ms: float


def deliver(hook: OutgoingWebhook, event: Any, event_id: str, attempt: int) -> Delivery:
    """POST ``event`` (JSON), signed with the hook's secret; never raises for the receiver's failures."""
    body = orjson.dumps(event)
    signature = sign(body, hook.secret) if hook.style == "timestamped" else sign_plain(body, hook.secret)
    headers = {"Content-Type": "application/json", "User-Agent": "alyx-webhooks", hook.header: signature,
               "X-Alyx-Event-Id": event_id, "X-Alyx-Attempt": str(attempt)}
    t0 = time.monotonic()
    try:
        response = requests.post(hook.url, data=body, headers=headers, timeout=hook.timeout_seconds,
                                 allow_redirects=False)
        status, content = response.status_code, response.content
        problem = None if 200 <= status < 300 else f"The receiver answered {status}."
    except requests.RequestException as exc:
        status, content, problem = 0, b"", f"{type(exc).__name__}: {exc}"
    return Delivery(status, content, problem, round((time.monotonic() - t0) * 1000, 3))
