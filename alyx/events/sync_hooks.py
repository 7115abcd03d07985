"""Sync database hooks: record guards run before the write's transaction that may change fields or refuse it."""
from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from alyx.errors import AlyxError
from alyx.events.index import HookCatalog
from alyx.events.outbox import change_input
from alyx.events.trigger import run_trigger
from alyx.functions import Functions, public_details
from alyx.rules import Principal
from alyx.sandbox import CallResult


class SyncHooks:
    """The guard of every collection with ``mode: sync`` hooks (never inside the SQLite write lock)."""

    def __init__(self, catalog: HookCatalog, functions: Functions, timeout_seconds: float) -> None:
        self.catalog = catalog
        self.functions = functions
        self.timeout_seconds = timeout_seconds  # events.sync_timeout_seconds: a cap on the function's timeout

    def applies(self, collection: str, action: str) -> bool:
        return bool(self.catalog.refresh().sync_db.get((collection, action)))

    def run(self, collection: str, action: str, document: dict[str, Any], previous: dict[str, Any] | None,
            writer: Principal | None) -> dict[str, Any] | None:
        """Run each sync hook in turn, as the write's ``writer``; returns the fields they change, or raises the
        refusal."""
        changes: dict[str, Any] = {}
        for name in self.catalog.index.sync_db.get((collection, action), []):
            try:
                spec = self.functions.spec(name)
            except AlyxError as exc:
                if exc.status == 404:  # removed since the index was read: it no longer guards anything
                    continue
                raise
            timeout = min(spec.limits.timeout, float(self.timeout_seconds))
            spec = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, timeout=timeout))
            hook_input = change_input(collection, action, {**document, **changes}, previous)
            result, execution_id = run_trigger(self.functions, spec, "database", hook_input, caller=writer)
            if result.outcome == "success" and result.status < 400:
                changes.update(changes_from(result, name, execution_id))
                continue
            raise rejection(name, result, execution_id, timeout)
        return changes


def changes_from(result: CallResult, name: str, execution_id: str) -> dict[str, Any]:
    """A sync hook's 2xx answer: `{"changes": {...}}` sets fields; anything else changes nothing;
    changes that are not an object are the hook failing (502 ``hook_failed``, as when it raises)."""
    if not result.body:
        return {}
    try:
        answer = orjson.loads(result.body)
    except orjson.JSONDecodeError:
        return {}
    changes = answer.get("changes") if isinstance(answer, dict) else None
    if changes is None:
        return {}
    if not isinstance(changes, dict):
        raise AlyxError("hook_failed", f"The {name!r} hook failed, so the write was not made: it answered changes "
                        "that are not an object.", 502, {"execution_id": execution_id},
                        {"X-Alyx-Execution-Id": execution_id})
    return changes


def rejection(name: str, result: CallResult, execution_id: str, timeout: float) -> AlyxError:
    """The client-facing error of a sync hook that refused the write (or failed, which also refuses it)."""
    headers = {"X-Alyx-Execution-Id": execution_id}
    if result.outcome == "success":  # the function answered 4xx: its own error shape reaches the client
        try:
            answer = orjson.loads(result.body or b"null")
        except orjson.JSONDecodeError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str):
            details = error.get("details") if isinstance(error.get("details"), dict) else {}
            return AlyxError(error["code"], error["message"], result.status, details, headers)
        return AlyxError("hook_rejected", f"The {name!r} hook refused the write (status {result.status}).",
                         result.status, {"execution_id": execution_id}, headers)
    if result.outcome == "timeout":
        return AlyxError("hook_timeout", f"The {name!r} hook did not answer within {timeout:g}s; the write was not "
                         "made.", 504, {"execution_id": execution_id}, headers)
    error = result.error or {}
    return AlyxError("hook_failed", f"The {name!r} hook failed, so the write was not made: "
                     f"{error.get('message') or result.outcome}", 502, public_details(error, execution_id), headers)
