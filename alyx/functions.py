"""Functions of one app: find them, check rules.invoke, run them in the sandbox manager, log each run."""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import peewee

from alyx import cel
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

log = logging.getLogger("alyx.functions")

SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-alyx-secret"}


def principal_dict(auth: Principal | None) -> dict[str, Any] | None:
    if auth is None:
        return None
    return {"id": auth.id, "email": auth.email, "role": auth.role, "verified": auth.verified}


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
        self._watcher = None
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
                    tier = choose_tier(self.config.functions_sandbox)
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
    def tier(self) -> str | None:
        """The tier in use, or None before the first function call."""
        return self._manager.tier.name if self._manager else None

    def describe_tier(self) -> str:
        """The tier in use, or the one functions.sandbox would pick here (for /api/health)."""
        return self.tier or detect_tier(self.config.functions_sandbox)

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

        threading.Thread(target=warm, daemon=True, name="alyx-functions-prewarm").start()
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
                raise AlyxError("function_config_error", f"Function {spec.name!r}: rules.invoke: {exc}", 500) from None
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
        """Run a function for a caller; returns the result and the execution id (faults are results)."""
        spec = self.registry.get(name)
        started_at = utcnow()
        try:
            self.check_invoke_rule(spec, auth, rule_request)
        except AlyxError as exc:
            if exc.status in (401, 403):
                self._record(spec, call, CallResult(exc.status, [], b"", "denied", exc.to_dict()["error"]),
                             log_input, started_at)
            raise
        call.auth = principal_dict(auth)
        manager = self.manager
        token = None
        if self._callback is not None:
            token = call.callback_token = self.callback_tokens.issue(auth, spec.limits.timeout * 2 + 30)
        try:
            result = manager.invoke(spec, call)
        finally:
            if token:
                self.callback_tokens.revoke(token)
        execution_id = self._record(spec, call, result, log_input, started_at)
        return result, execution_id

    def issue_callback_token(self, auth: Principal | None, spec: FunctionSpec) -> str | None:
        """A callback token for a call made outside invoke() (event triggers); None without a callback socket."""
        if self._callback is None:
            return None
        return self.callback_tokens.issue(auth, spec.limits.timeout * 2 + 30)

    def _record(self, spec: FunctionSpec, call: Call, result: CallResult, log_input: Any,
                started_at: Any) -> str:
        output = None
        if result.error is None or result.outcome in ("error", "memory_limit"):
            content_type = next((v for k, v in result.headers if k.lower() == "content-type"), None)
            output = {"status": result.status, "content_type": content_type, "body": capped_text(result.body)}
        t0 = time.monotonic()
        try:
            return self.executions.record(
                function=spec.name, version=spec.version, trigger=call.trigger, status=result.outcome,
                input=log_input, output=output, error=result.error, stdout=result.stdout, stderr=result.stderr,
                timings=result.timings, duration_ms=result.duration_ms, tier=self.tier or "",
                sandbox=result.sandbox, started_at=started_at)
        finally:
            log.debug("execution of %s logged in %.2f ms", spec.name, (time.monotonic() - t0) * 1000)


def http_log_input(method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, str],
                   body: bytes) -> dict[str, Any]:
    """The `input` an HTTP execution records: secrets (Authorization, cookies) left out, body capped."""
    return {"method": method, "path": path, "query": dict(query),
            "headers": {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS},
            "body": capped_text(body)}
