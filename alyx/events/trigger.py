"""Running a function for a trigger (database hook, webhook, schedule, custom event), as whom it says.

Who a trigger run is when it calls the API back (req.alyx): its caller — a custom event's publisher,
nobody (anonymous) for a webhook's sender — unless the manifest says ``run_as: system``. Database
hooks and schedules run as the server (``SYSTEM_PRINCIPAL``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from alyx.functions import Functions, trigger_log_input
from alyx.rules import Principal
from alyx.sandbox import Call, CallResult, FunctionSpec

# The server itself (an admin): database hooks and schedules, and functions whose manifest says run_as: system.
SYSTEM_PRINCIPAL = Principal("system", "system@alyx.local", "admin", True)


def runs_as(spec: FunctionSpec, caller: Principal | None) -> Principal | None:
    """Who a trigger run calls back as: never more than its caller without the manifest's ``run_as: system``."""
    return SYSTEM_PRINCIPAL if spec.hooks is not None and spec.hooks.run_as == "system" else caller


def principal_json(principal: Principal | None) -> dict[str, Any] | None:
    """A caller as a queued job keeps it (None: anonymous)."""
    return None if principal is None else principal.as_dict()


def principal_from(value: Any) -> Principal | None:
    """The caller a queued job kept (``principal_json``)."""
    if not isinstance(value, dict):
        return None
    return Principal(str(value["id"]), str(value["email"]), str(value.get("role") or "user"),
                     bool(value.get("verified")))


def trigger_call(spec: FunctionSpec, trigger: str, hook_input: Any, body: bytes | None = None,
                 headers: list[tuple[str, str]] | None = None) -> Call:
    """The call a trigger makes: POST with ``req.input`` (and, without a body of its own, the input as JSON)."""
    if body is None:
        body = orjson.dumps(hook_input)
        headers = [("content-type", "application/json"), *(headers or [])]
    return Call("POST", f"/api/functions/{spec.name}", list(headers or []), body, None, hook_input, trigger)


def run_trigger(functions: Functions, spec: FunctionSpec, trigger: str, hook_input: Any, *,
                caller: Principal | None, body: bytes | None = None, headers: list[tuple[str, str]] | None = None,
                record: bool = True) -> tuple[CallResult, str]:
    """Run a function for a trigger (no invoke rule) as ``runs_as(spec, caller)``, and log it."""
    call = trigger_call(spec, trigger, hook_input, body, headers)
    return functions.run(spec, call, callback_as=runs_as(spec, caller), log_input=trigger_log_input(hook_input),
                         record=record)


def log_trigger(functions: Functions, function: str, version: str, trigger: str, hook_input: Any,
                result: CallResult | None, started: dt.datetime, **given: Any) -> str:
    """The execution record of a trigger run (or of one that never ran: ``status`` and ``error`` given)."""
    return functions.log_run(function, version, trigger, trigger_log_input(hook_input), result, started, **given)
