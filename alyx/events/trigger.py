"""Running a function for a trigger (database hook, webhook, schedule, custom event): the server is the caller."""
from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from alyx.functions import Functions, trigger_log_input
from alyx.rules import Principal
from alyx.sandbox import Call, CallResult, FunctionSpec

# Who a hook, webhook, schedule or event run is when it calls the API back (req.alyx): the server itself.
SYSTEM_PRINCIPAL = Principal("system", "system@alyx.local", "admin", True)


def trigger_call(spec: FunctionSpec, trigger: str, hook_input: Any, body: bytes | None = None,
                 headers: list[tuple[str, str]] | None = None) -> Call:
    """The call a trigger makes: POST with ``req.input`` (and, without a body of its own, the input as JSON)."""
    if body is None:
        body = orjson.dumps(hook_input)
        headers = [("content-type", "application/json"), *(headers or [])]
    return Call("POST", f"/api/functions/{spec.name}", list(headers or []), body, None, hook_input, trigger)


def run_trigger(functions: Functions, spec: FunctionSpec, trigger: str, hook_input: Any, *,
                body: bytes | None = None, headers: list[tuple[str, str]] | None = None,
                record: bool = True) -> tuple[CallResult, str]:
    """Run a function for a trigger (no invoke rule: the caller is the server itself) and log it."""
    call = trigger_call(spec, trigger, hook_input, body, headers)
    return functions.run(spec, call, callback_as=SYSTEM_PRINCIPAL, log_input=trigger_log_input(hook_input),
                         record=record)


def log_trigger(functions: Functions, function: str, version: str, trigger: str, hook_input: Any,
                result: CallResult | None, started: dt.datetime, **given: Any) -> str:
    """The execution record of a trigger run (or of one that never ran: ``status`` and ``error`` given)."""
    return functions.log_run(function, version, trigger, trigger_log_input(hook_input), result, started, **given)
