"""The outbox: a committed write's async hook and outgoing-webhook jobs, inserted inside its own transaction."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alyx.clock import iso, utcnow
from alyx.events.index import HookIndex
from alyx.events.outgoing import OutgoingWebhook
from alyx.functions import principal_dict
from alyx.jobs import job_row
from alyx.records import ChangeEvent

HOOK_ACTION = {"create": "insert", "update": "update", "delete": "delete"}  # ChangeEvent → req.input.action


def change_input(collection: str, action: str, document: Mapping[str, Any],
                 previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """``req.input`` of a database hook: {document, collection, action, previous?}."""
    hook_input: dict[str, Any] = {"document": document, "collection": collection, "action": HOOK_ACTION[action]}
    if previous is not None:
        hook_input["previous"] = previous
    return hook_input


def outbox_rows(event: ChangeEvent, index: HookIndex, outgoing: Mapping[str, OutgoingWebhook],
                retries_of: Callable[[str], int], default_retries: int) -> list[dict[str, Any]]:
    """The job rows one change queues: a run per async hook (as the change's writer), a delivery per matching
    outgoing webhook."""
    key = (event.collection, event.action)
    functions = index.async_db.get(key)
    hooks = [h for h in outgoing.values() if h.matches(*key)] if outgoing else None
    if not functions and not hooks:
        return []
    hook_input = change_input(event.collection, event.action, event.record, event.previous)
    payload = {"input": hook_input, "caller": principal_dict(event.writer)}
    rows = [job_row("function", name, "database", payload, 1 + retries_of(name))
            for name in functions or ()]
    if hooks:
        body = {"type": f"{event.collection}.{HOOK_ACTION[event.action]}", "created_at": iso(utcnow()),
                **hook_input}
        rows += [job_row("outgoing", h.name, "database", {"event": body},
                         1 + (default_retries if h.retries is None else h.retries)) for h in hooks]
    return rows
