"""What an incoming webhook and a custom event become: a checked ``req.input`` (verification, event shape)."""
from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alyx.errors import bad_request
from alyx.functions import SECRET_HEADERS
from alyx.sandbox import CallResult
from alyx.sandbox.manifest import WebhookHook
from alyx.signatures import Verification, verify

EVENT_KEYS = {"type", "source", "action", "payload"}
NOT_PASSED_ON = ("content-length", "host")  # the sandbox manager sets its own


@dataclass(frozen=True)
class WebhookAnswer:
    """What one delivery came to: run now (``mode: sync``: the function's answer) or queued (``async``: 202)."""

    result: CallResult | None = None  # sync: what the function answered (or how it failed)
    execution_id: str = ""
    queued: dict[str, Any] | None = None  # async: {job_id, verified, verification_error}


FirstTime = Callable[[str, float], bool]  # (replay key, expires) → True the first time only
REPLAYED = "this signed delivery was already received (a replay inside the tolerance window)"


def webhook_input(hook: WebhookHook, body: bytes, headers: Mapping[str, str],
                  first_time: FirstTime | None = None) -> tuple[dict[str, Any], Verification]:
    """Check the signature (the hook's scheme only; a timestamped signature once); the delivery's input
    {body, headers (no secrets), verified, verification_error}."""
    if hook.algorithm is None or hook.header is None:
        result = Verification(False, "this webhook has no verification configured")
    else:
        wanted = hook.header.lower()
        header_value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        result = verify(body, header_value, hook.secret, hook.algorithm, hook.tolerance_seconds, scheme=hook.scheme)
        if (result.verified and result.replay_key and result.replay_expires is not None and first_time is not None
                and not first_time(result.replay_key, result.replay_expires)):
            result = Verification(False, REPLAYED)
    kept_headers = {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}
    hook_input = {**body_input(body), "headers": kept_headers,
                  "verified": result.verified, "verification_error": result.error}
    return hook_input, result


def body_input(body: bytes) -> dict[str, str]:
    """A delivery's body as JSON can hold it exactly: the text when it is UTF-8, else base64 with
    ``body_encoding: base64`` (the function's req.body / rawBody are the raw bytes either way)."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}


def input_body(hook_input: Mapping[str, Any]) -> bytes:
    """The raw bytes of a delivery stored by ``body_input`` (an async webhook's job)."""
    text = hook_input.get("body") or ""
    return base64.b64decode(text) if hook_input.get("body_encoding") == "base64" else str(text).encode()


def delivery_headers(hook_input: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers a webhook run gets: the delivery's own (no secrets), as ``webhook_input`` kept them."""
    return [(k, v) for k, v in (hook_input.get("headers") or {}).items() if k.lower() not in NOT_PASSED_ON]


def clean_event(event: Any) -> dict[str, Any]:
    """A published event {type, source?, action?, payload?}, checked (400 naming what is wrong)."""
    if not isinstance(event, dict) or set(event) - EVENT_KEYS:
        raise bad_request("An event is an object {type, source?, action?, payload?}.")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > 200:
        raise bad_request("An event needs a type (a string like 'order.paid').")
    for key in ("source", "action"):
        if event.get(key) is not None and not isinstance(event[key], str):
            raise bad_request(f"event.{key} must be a string.")
    return {"type": kind, "source": event.get("source"), "action": event.get("action"),
            "payload": event.get("payload")}
