"""Running a function for a trigger (database hook, webhook, schedule, custom event), as whom it says.

A trigger run's caller is whoever caused it: a database hook's writer (the principal of the write),
a custom event's publisher, nobody (anonymous) for a webhook's sender or a schedule. It is the run's
``req.auth``, and who the run is when it calls the API back (req.alyx) — unless the manifest says
``run_as: system``: then req.alyx calls as the server (``SYSTEM_PRINCIPAL``, an admin).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from alyx.functions import Functions, principal_dict, trigger_log_input
from alyx.rules import SYSTEM_PRINCIPAL, Principal
from alyx.sandbox import Call, CallResult, FunctionSpec


def runs_as(spec: FunctionSpec, caller: Principal | None) -> Principal | None:
    """Who a trigger run calls back as: never more than its caller without the manifest's ``run_as: system``."""
    return SYSTEM_PRINCIPAL if spec.hooks is not None and spec.hooks.run_as == "system" else caller


def principal_from(value: Any) -> Principal | None:
    """The caller a queued job kept (as ``alyx.functions.principal_dict``; None: anonymous)."""
    if not isinstance(value, dict):
        return None
    return Principal(str(value["id"]), str(value["email"]), str(value.get("role") or "user"),
                     bool(value.get("verified")))


def trigger_call(spec: FunctionSpec, trigger: str, hook_input: Any, caller: Principal | None,
                 body: bytes | None = None, headers: list[tuple[str, str]] | None = None) -> Call:
    """The call a trigger makes: POST with ``req.input`` (and, without a body of its own, the input as JSON)
    and ``req.auth`` its caller."""
    if body is None:
        body = orjson.dumps(hook_input)
        headers = [("content-type", "application/json"), *(headers or [])]
    return Call("POST", f"/api/functions/{spec.name}", list(headers or []), body, principal_dict(caller), hook_input,
                trigger)


def run_trigger(functions: Functions, spec: FunctionSpec, trigger: str, hook_input: Any, *,
                caller: Principal | None, body: bytes | None = None, headers: list[tuple[str, str]] | None = None,
                record: bool = True) -> tuple[CallResult, str]:
    """Run a function for a trigger (no invoke rule): req.auth is ``caller``, req.alyx calls as
    ``runs_as(spec, caller)``; log it."""
    call = trigger_call(spec, trigger, hook_input, caller, body, headers)
    return functions.run(spec, call, callback_as=runs_as(spec, caller), log_input=trigger_log_input(hook_input),
                         record=record)


def log_trigger(functions: Functions, function: str, version: str, trigger: str, hook_input: Any,
                result: CallResult | None, started: dt.datetime, **given: Any) -> str:
    """The execution record of a trigger run (or of one that never ran: ``status`` and ``error`` given)."""
    return functions.log_run(function, version, trigger, trigger_log_input(hook_input), result, started, **given)
