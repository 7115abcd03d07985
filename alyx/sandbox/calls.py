"""What goes into the sandbox manager and what comes out: a call, its result, the pool settings."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alyx.sandbox.protocol import (
    LoadError,
    RawResponse,
    ResponseTooLarge,
    RuntimeGone,
    RuntimeTimeout,
    encode_context,
)
from alyx.sandbox.registry import FunctionSpec
from alyx.sandbox.tiers import ExitInfo

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer",
               "proxy-authenticate", "proxy-authorization", "host"}
RUNTIME_HEADERS = {"server", "date"}  # the shim's own; the app server sets these


@dataclass
class PoolSettings:
    """Pool sizing shared by every function (per-function limits come from the manifest)."""

    warm_per_runtime: int = 1
    idle_ttl: float = 300.0  # seconds
    memory_budget: int = 2048  # MB: the sum of the memory limits of all live sandboxes
    max_response_bytes: int = 10 * 1024 * 1024  # a function's answer body at most (502 past it)
    reap_interval: float = 2.0


@dataclass
class Call:
    """One invocation as the runtime sees it: an HTTP request plus the caller and trigger."""

    method: str = "POST"
    target: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    auth: dict[str, Any] | None = None
    input: Any = None
    trigger: str = "http"
    callback_token: str | None = None  # lets the function call the Alyx API as its caller


@dataclass
class CallResult:
    """What came back, or how it failed; every field is what the execution log records."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str  # success | error | timeout | crashed | memory_limit | load_error
    error: dict[str, Any] | None = None
    stdout: str = ""
    stderr: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # ms per phase: queue, acquire, init, handler
    duration_ms: float = 0.0
    sandbox: str | None = None
    version: str = ""


def request_headers(call: Call, invocation: str, deadline: float) -> list[tuple[str, str]]:
    """The headers of one invocation on the runtime protocol: the caller's (less hop-by-hop and any
    ``x-alyx-*`` they sent) plus the invocation id, the context and the absolute deadline (epoch ms);
    ``deadline`` is on the ``time.monotonic()`` clock."""
    context = encode_context({"auth": call.auth, "input": call.input, "trigger": call.trigger,
                              "callback_token": call.callback_token})
    headers = [(k, v) for k, v in call.headers if k.lower() not in HOP_HEADERS and
               not k.lower().startswith("x-alyx-")]
    return headers + [("x-alyx-invocation-id", invocation), ("x-alyx-context", context),
                      ("x-alyx-deadline", str(int((time.time() + deadline - time.monotonic()) * 1000)))]


def result_of(raw: RawResponse, stdout: str, stderr: str, timings: dict[str, float], duration: float,
              sandbox_id: str, version: str) -> CallResult:
    """The runtime's answer as a CallResult: its outcome header read, its own headers dropped."""
    kind = raw.header("x-alyx-outcome") or "ok"
    out_headers = [(k, v) for k, v in raw.headers if k.lower() not in HOP_HEADERS and
                   k.lower() not in RUNTIME_HEADERS and not k.lower().startswith("x-alyx-")]
    error = None
    outcome = "success"
    if kind != "ok":
        outcome = "memory_limit" if kind == "memory_limit_exceeded" else "error"
        try:
            error = raw.json().get("error")
        except ValueError:
            error = {"code": kind, "message": raw.body[:500].decode("utf-8", "replace")}
    return CallResult(raw.status, out_headers, raw.body, outcome, error, stdout, stderr, timings, duration,
                      sandbox_id, version)


@dataclass(frozen=True)
class Fault:
    """A call that failed before the runtime answered (or while it ran): status, code and message."""

    status: int
    code: str
    outcome: str
    message: str
    details: dict[str, Any]

    def result(self, stdout: str, stderr: str, timings: dict[str, float], duration: float, sandbox_id: str | None,
               version: str) -> CallResult:
        error = {"code": self.code, "message": self.message, "details": self.details}
        return CallResult(self.status, [], b"", self.outcome, error, stdout, stderr, timings, duration, sandbox_id,
                          version)


def timeout_fault(name: str, timeout: float) -> Fault:
    return Fault(504, "function_timeout", "timeout",
                 f"The function {name!r} did not finish within its timeout of {timeout:g}s; "
                 "its sandbox was stopped and will be replaced.", {"phase": "handler"})


def exit_fault(name: str, memory_mb: int, oom: bool, exit_code: int | None) -> Fault:
    """The runtime went away during the call: out of memory, or another exit."""
    if oom:
        return Fault(500, "memory_limit_exceeded", "memory_limit",
                     f"The function {name!r} exceeded its memory limit of {memory_mb} MB; "
                     "its sandbox was stopped and will be replaced.", {"memory_mb": memory_mb})
    return Fault(502, "function_crashed", "crashed",
                 f"The function's runtime exited during the call (exit code {exit_code}); "
                 "its sandbox will be replaced.", {"exit_code": exit_code})


def bad_response_fault(name: str, problem: str) -> Fault:
    """The runtime answered, but not with something HTTP can pass on (too long, an invalid status)."""
    return Fault(502, "function_bad_response", "error", f"The function {name!r} answered badly: {problem}.", {})


def internal_fault(name: str, exc: Exception) -> Fault:
    """The server failed to make or read the call (the runtime is fine and keeps its sandbox)."""
    return Fault(500, "internal_error", "error",
                 f"The call to {name!r} failed inside the server ({type(exc).__name__}); it has been logged.", {})


def invoke_fault(spec: FunctionSpec, exc: Exception, exit_info: Callable[[], ExitInfo]) -> tuple[Fault, bool]:
    """What a failed invocation comes to: its fault, and whether its sandbox must be discarded."""
    if isinstance(exc, ResponseTooLarge):  # the runtime finished its call; only this answer is refused
        return bad_response_fault(spec.name, f"its body is longer than the limit of {exc.limit} bytes "
                                             "(functions.max_response_bytes)"), False
    if isinstance(exc, RuntimeTimeout):
        return timeout_fault(spec.name, spec.limits.timeout), True
    if isinstance(exc, RuntimeGone):
        info = exit_info()
        return exit_fault(spec.name, spec.limits.memory, info.oom, info.code), True
    return internal_fault(spec.name, exc), False  # our side failed before the runtime saw the call


class QueueTimeout(Exception):
    """No instance of the function became free before the call's deadline."""


def acquire_fault(spec: FunctionSpec, exc: Exception) -> Fault:
    """Why a call never reached its handler: queued too long, failed to load, or no sandbox started."""
    name, limits = spec.name, spec.limits
    if isinstance(exc, QueueTimeout):
        return Fault(504, "function_timeout", "timeout",
                     f"The function {name!r} did not get a free instance within its timeout of {limits.timeout:g}s "
                     f"(max_instances={limits.max_instances}).", {"phase": "queue"})
    if isinstance(exc, LoadError):
        return Fault(500, "function_load_error", "load_error", f"The function {name!r} failed to load: {exc.message}",
                     exc.details)
    if isinstance(exc, RuntimeTimeout):
        return Fault(504, "function_timeout", "timeout",
                     f"The function {name!r} did not start within its timeout of {limits.timeout:g}s.",
                     {"phase": "start"})
    assert isinstance(exc, RuntimeGone)
    return Fault(503, "sandbox_unavailable", "error", f"No sandbox could be started for {name!r}: {exc}", {})
