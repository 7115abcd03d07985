"""Functions of one app: find them, check rules.invoke, run them in the sandbox manager, log each run.

``Functions.run`` is the one way a function runs, whoever asks: an HTTP call (``invoke``) or a
trigger (hooks, webhooks, schedules, events in alyx/events/). It issues and revokes the callback
token, runs the call and writes the execution record; what differs is passed in.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import peewee

from alyx import cel
from alyx.background import spawn
from alyx.callback import CallbackServer, CallbackTokens
from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database
from alyx.errors import AlyxError
from alyx.executions import Executions, capped_text
from alyx.rules import AUTH_KEYS, Principal
from alyx.sandbox import (
    Call,
    CallResult,
    FunctionRegistry,
    FunctionSpec,
    PoolSettings,
    SandboxManager,
    choose_tier,
    detect_tier,
)
from alyx.sandbox.registry import unavailable

if TYPE_CHECKING:
    from alyx.sandbox.watch import FunctionWatcher

log = logging.getLogger("alyx.functions")

# Never handed to a function nor written to the execution log: the caller's credentials stay here.
SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-alyx-secret"}
# What of a failed run's error details a client may see (the rest is in the execution log).
PUBLIC_DETAILS = ("phase", "file", "line", "exit_code", "memory_mb")
FAULT_OUTCOMES_WITH_OUTPUT = ("error", "memory_limit")  # failures whose answer an HTTP run still logs


def principal_dict(auth: Principal | None) -> dict[str, Any] | None:
    """req.auth of a call: the caller's JSON form, or None for anonymous (also what a queued trigger job keeps)."""
    return None if auth is None else auth.as_dict()


def public_details(error: Mapping[str, Any] | None, execution_id: str) -> dict[str, Any]:
    """The details of a failed run a client gets: PUBLIC_DETAILS and the execution id."""
    details = {k: v for k, v in ((error or {}).get("details") or {}).items() if k in PUBLIC_DETAILS}
    details["execution_id"] = execution_id
    return details


def trigger_log_input(value: Any) -> Any:
    """What an execution record keeps of a trigger's input: big webhook bodies are capped."""
    if isinstance(value, dict) and isinstance(value.get("body"), str) and len(value["body"]) > 16 * 1024:
        return {**value, "body": capped_text(value["body"])}
    return value


class Functions:
    """Discovery, invoke rules, the (lazily started) sandbox manager and the execution log."""

    def __init__(self, config: Config, db: Database, execution_model: type[peewee.Model],
                 environ: Mapping[str, str] | None = None, settings: PoolSettings | None = None) -> None:
        self.config = config
        self.registry = FunctionRegistry(config.functions_dir, os.environ if environ is None else environ)
        self.executions = Executions(db, execution_model)
        self.settings = settings or PoolSettings()
        self._manager: SandboxManager | None = None
        self._lock = threading.Lock()
        self._rules: dict[str, cel.Node] = {}
        self._watcher: FunctionWatcher | None = None
        self._closed = False
        self.callback_app: Any = None  # the WSGI app functions call back into (set by the blueprint)
        self.callback_tokens = CallbackTokens()
        self._callback: CallbackServer | None = None

    # -- the manager -----------------------------------------------------------------------------
    @property
    def manager(self) -> SandboxManager:
        """The sandbox manager, created (and its tier chosen) on first use."""
        with self._lock:
            if self._closed:
                raise AlyxError("sandbox_unavailable", "The server is shutting down.", 503)
            if self._manager is None:
                try:
                    tier = choose_tier(self.config.functions_sandbox, self.development)
                except RuntimeError as exc:
                    raise AlyxError("sandbox_unavailable", str(exc), 503) from None
                if self.callback_app is not None:
                    self._callback = CallbackServer(self.callback_app, self.callback_tokens)
                    tier.callback_dir = self._callback.start()
                self._manager = SandboxManager(tier, self.settings)
                atexit.register(self.close)
                log.info("functions run in the %r sandbox tier", tier.name)
            return self._manager

    @property
    def development(self) -> bool:
        """`auto` may fall back to the unisolated process tier only in development."""
        return self.config.server_environment == "development"

    @property
    def tier(self) -> str | None:
        """The tier in use, or None before the first function call."""
        return self._manager.tier.name if self._manager else None

    def describe_tier(self) -> str:
        """The tier in use, or the one functions.sandbox would pick here (for /api/health)."""
        return self.tier or detect_tier(self.config.functions_sandbox, self.development)

    def prewarm(self) -> None:
        """Start the manager and a warm sandbox per runtime used by a function, in the background."""
        specs = []
        for name in self.registry.names():
            try:
                specs.append(self.registry.get(name))
            except AlyxError:
                continue
        if not specs:
            return

        def warm() -> None:
            try:
                self.manager.prewarm({spec.runtime for spec in specs})
                for spec in specs:
                    if spec.limits.min_warm:
                        self.manager.keep_warm(spec)
            except AlyxError as exc:
                log.warning("functions cannot be prewarmed: %s", exc.message)

        spawn(warm, name="alyx-functions-prewarm")
        self._watch()

    def _watch(self) -> None:
        """Follow edits in functions/ so a changed function switches version before its next call."""
        from alyx.sandbox.watch import FunctionWatcher

        def changed(name: str) -> None:
            if self._manager is not None:
                self._manager.refresh(self.registry.get(name))

        with self._lock:
            if self._watcher is not None or self._closed or not self.config.functions_dir.is_dir():
                return
            try:
                self._watcher = FunctionWatcher(self.config.functions_dir, changed)
                self._watcher.start()
            except Exception as exc:  # noqa: BLE001 - calls still see edits without the watcher
                log.warning("not watching %s for edits: %s", self.config.functions_dir, exc)
                self._watcher = None

    def close(self) -> None:
        """Stop every sandbox this app started."""
        with self._lock:
            self._closed = True
            manager, self._manager = self._manager, None
            watcher, self._watcher = self._watcher, None
            callback, self._callback = self._callback, None
        if watcher is not None:
            watcher.stop()
        if manager is not None:
            manager.shutdown()
        if callback is not None:
            callback.stop()

    # -- invoking --------------------------------------------------------------------------------
    def spec(self, name: str) -> FunctionSpec:
        return self.registry.get(name)

    def check_invoke_rule(self, spec: FunctionSpec, auth: Principal | None, request: Mapping[str, Any]) -> None:
        """rules.invoke (CEL over auth and request): absent means anyone; admins always pass."""
        if spec.invoke_rule is None or (auth is not None and auth.is_admin):
            return
        node = self._rules.get(spec.invoke_rule)
        if node is None:
            try:
                node = cel.parse(spec.invoke_rule)
            except cel.CelError as exc:
                raise unavailable(f"Function {spec.name!r}: rules.invoke: {exc}") from None
            self._rules[spec.invoke_rule] = node
        auth_value = principal_dict(auth)

        def lookup(path: tuple[str, ...]) -> Any:
            root, rest = path[0], path[1:]
            if root == "auth":
                if not rest:
                    return auth_value
                if len(rest) == 1 and rest[0] in AUTH_KEYS:
                    return None if auth_value is None else auth_value[rest[0]]
            if root == "request" and rest:
                value: Any = request
                for part in rest:
                    if not isinstance(value, Mapping) or part not in value:
                        return None
                    value = value[part]
                return value
            raise cel.CelError(f"unknown name {'.'.join(path)!r}")

        try:
            allowed = cel.Evaluator(lookup).truth(node)
        except (cel.CelError, TypeError, ValueError):
            allowed = False  # a rule that errors denies
        if not allowed:
            if auth is None:
                raise AlyxError("unauthorized", f"Calling {spec.name!r} needs a signed-in user.", 401)
            raise AlyxError("forbidden", f"You may not call {spec.name!r}.", 403)

    def invoke(self, name: str, call: Call, auth: Principal | None, rule_request: Mapping[str, Any],
               log_input: Any) -> tuple[CallResult, str]:
        """Run a function for an HTTP caller (rules.invoke first); returns the result and the execution id.

        A function with triggers is served over HTTP only when its manifest says ``http: true``."""
        spec = self.registry.get(name)
        if spec.hooks is not None and not spec.hooks.http:
            raise AlyxError("not_found", f"Function {name!r} is not served over HTTP: it runs on its triggers "
                            "(hooks, schedules); set `http: true` in its manifest.yaml to serve it too.", 404)
        try:
            self.check_invoke_rule(spec, auth, rule_request)
        except AlyxError as exc:
            if exc.status in (401, 403):
                self.log_run(spec.name, spec.version, call.trigger, log_input,
                             CallResult(exc.status, [], b"", "denied", exc.to_dict()["error"]), utcnow(),
                             fault_output=False)
            raise
        call.auth = principal_dict(auth)
        return self.run(spec, call, callback_as=auth, log_input=log_input, fault_output=False)

    def run(self, spec: FunctionSpec, call: Call, *, callback_as: Principal | None, log_input: Any,
            record: bool = True, fault_output: bool = True) -> tuple[CallResult, str]:
        """Run ``call`` (its trigger, req.auth and input already set) and log it; faults are results.

        ``callback_as``: who the function is when it calls the API back (req.alyx). ``record``: False
        when the caller writes the execution itself (a job, inside its own transaction); the id is then
        "". ``fault_output``: log the answer of a run that timed out or crashed too (see log_run).
        """
        started_at = utcnow()
        manager = self.manager  # first: it starts the callback socket
        token = None
        if self._callback is not None:
            token = call.callback_token = self.callback_tokens.issue(callback_as, spec.limits.timeout * 2 + 30)
        try:
            result = manager.invoke(spec, call)
        finally:
            if token:
                self.callback_tokens.revoke(token)
        execution_id = self.log_run(spec.name, spec.version, call.trigger, log_input, result, started_at,
                                    fault_output=fault_output) if record else ""
        return result, execution_id

    def log_run(self, function: str, version: str, trigger: str, log_input: Any, result: CallResult | None,
                started_at: dt.datetime, *, status: str | None = None, error: Mapping[str, Any] | None = None,
                output: Any = None, duration_ms: float | None = None, fault_output: bool = True) -> str:
        """One execution record; returns its id.

        With a result, status, error, logs and timings come from it unless given, and ``output`` is its
        answer; an HTTP run (``fault_output=False``) logs no answer for timeouts, crashes and load errors.
        Without one (the run never started, or was refused), what is given is logged.
        """
        if result is not None and (fault_output or result.error is None
                                   or result.outcome in FAULT_OUTCOMES_WITH_OUTPUT):
            content_type = next((v for k, v in result.headers if k.lower() == "content-type"), None)
            output = {"status": result.status, "content_type": content_type, "body": capped_text(result.body)}
        t0 = time.monotonic()
        try:
            return self.executions.record(
                function=function, version=version, trigger=trigger,
                status=status or (result.outcome if result is not None else "error"), input=log_input,
                output=output, error=error if error is not None else (result.error if result is not None else None),
                stdout=result.stdout if result else "", stderr=result.stderr if result else "",
                timings=result.timings if result else {},
                duration_ms=duration_ms if duration_ms is not None else (result.duration_ms if result else 0.0),
                tier=self.tier or "", sandbox=result.sandbox if result else None, started_at=started_at)
        finally:
            log.debug("execution of %s logged in %.2f ms", function, (time.monotonic() - t0) * 1000)

    def problems(self) -> list[dict[str, str]]:
        """Functions that cannot be loaded now, with why (file:line: key: message), for /api/health."""
        return [{"function": name, "message": message} for name, message in sorted(self.registry.problems().items())]

    def catalog(self) -> list[dict[str, Any]]:
        """Every function with its runtime and version, or the problem that keeps it from loading."""
        items: list[dict[str, Any]] = []
        for name in self.registry.names():
            try:
                spec = self.registry.get(name)
            except AlyxError as exc:
                if exc.status != 404:
                    items.append({"name": name, "status": "unavailable", "error": exc.message})
                continue
            items.append({"name": name, "status": "ok", "runtime": spec.runtime, "version": spec.version[:12]})
        return items


def http_log_input(method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, str],
                   body: bytes) -> dict[str, Any]:
    """The `input` an HTTP execution records: secrets (Authorization, cookies) left out, body capped."""
    return {"method": method, "path": path, "query": dict(query),
            "headers": {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS},
            "body": capped_text(body)}
