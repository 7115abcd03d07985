"""Events: database hooks, verified webhooks, custom events and outgoing webhooks → durable jobs → function runs.

- Manifests say what a function listens to (``hooks:``, ``schedules:``, ``retries:``); ``HookIndex``
  is that, read from every function's manifest and refreshed as files change.
- Async database hooks and outgoing webhooks are an outbox: their job rows are inserted by a
  journal writer inside the record's own write transaction (alyx/records.py), so a committed write
  always has its jobs and a rolled-back one has none.
- Sync database hooks are record guards: they run before the write's transaction (never inside the
  SQLite write lock), within ``events.sync_timeout_seconds``, and may refuse the write or change fields.
- Every job runs through ``run_job``: one attempt, one execution record; failures go back to the
  queue with a backoff until the function's ``retries`` are spent, then to the dead letter.

No Flask here: alyx/blueprints/webhooks.py and schedules.py are the HTTP side.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import requests
import yaml

from alyx.clock import utcnow
from alyx.errors import AlyxError, ConfigError, bad_request
from alyx.executions import capped_text
from alyx.jobs import Job, JobQueue, job_row
from alyx.leases import Leases
from alyx.models import build_event_models
from alyx.records import ChangeEvent
from alyx.rules import Principal
from alyx.scheduler import JobRunner, RunnerSettings, Scheduler
from alyx.schedules import ScheduleError, ScheduleSpec, parse_schedules
from alyx.signatures import ALGORITHMS, DEFAULT_TOLERANCE_SECONDS, Verification, sign, verify
from alyx.signatures import sign_plain as _sign_plain

if TYPE_CHECKING:
    from alyx.sandbox import CallResult, FunctionSpec
    from alyx.services import Services

log = logging.getLogger("alyx.events")

ACTIONS = {"insert": "create", "create": "create", "update": "update", "delete": "delete"}
HOOK_ACTION = {"create": "insert", "update": "update", "delete": "delete"}  # ChangeEvent → req.input.action
PUBLIC_DETAILS = ("phase", "file", "line", "exit_code", "memory_mb", "execution_id")
SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-alyx-secret"}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_SIGNATURE_HEADER = "X-Alyx-Signature"
INDEX_TTL_SECONDS = 1.0
# Who a hook, webhook, schedule or event run is when it calls the API back (req.alyx): the server itself.
SYSTEM_PRINCIPAL = Principal("system", "system@alyx.local", "admin", True)


# -- what manifests listen to ---------------------------------------------------------------------
@dataclass(frozen=True)
class DatabaseHook:
    collection: str
    actions: frozenset[str]  # create | update | delete
    mode: str  # async | sync


@dataclass(frozen=True)
class WebhookHook:
    algorithm: str | None  # None: no verification configured
    header: str | None
    secret: str | None
    required: bool
    tolerance_seconds: float


@dataclass(frozen=True)
class EventHook:
    type: str  # glob over the event type ("order.*"); "*" for all
    source: str
    action: str


@dataclass(frozen=True)
class FunctionHooks:
    """Everything one function's manifest subscribes it to."""

    function: str
    retries: int | None = None
    database: tuple[DatabaseHook, ...] = ()
    webhook: WebhookHook | None = None
    events: tuple[EventHook, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()


def _resolve_env(value: Any, environ: Mapping[str, str]) -> str | None:
    if value is None:
        return None
    return ENV_REF.sub(lambda m: environ.get(m.group(1), ""), str(value))


def parse_hooks(function: str, manifest: Mapping[str, Any], environ: Mapping[str, str]) -> FunctionHooks:
    """A manifest's hooks/schedules/retries → FunctionHooks; ConfigError naming the entry that is wrong."""
    where = f"Function {function!r}: manifest.yaml"
    retries = manifest.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ConfigError(f"{where}: retries must be a whole number >= 0, got {retries!r}")
    raw_hooks = manifest.get("hooks") or []
    if not isinstance(raw_hooks, list):
        raise ConfigError(f"{where}: hooks must be a list")
    database: list[DatabaseHook] = []
    events: list[EventHook] = []
    webhook: WebhookHook | None = None
    for index, hook in enumerate(raw_hooks):
        at = f"{where}: hooks[{index}]"
        if not isinstance(hook, dict):
            raise ConfigError(f"{at} must be a mapping")
        kind = hook.get("type")
        if kind == "database":
            _known(at, hook, {"type", "source", "collection", "action", "actions", "mode"})
            collection = hook.get("source") or hook.get("collection")
            if not isinstance(collection, str) or not collection:
                raise ConfigError(f"{at}: source (the collection) is required")
            raw_actions = hook.get("actions", hook.get("action", "*"))
            names = raw_actions if isinstance(raw_actions, list) else [raw_actions]
            if names == ["*"]:
                names = ["insert", "update", "delete"]
            if not names or any(a not in ACTIONS for a in names):
                raise ConfigError(f"{at}: action must be insert, update or delete (or a list of them), "
                                  f"got {raw_actions!r}")
            mode = hook.get("mode", "async")
            if mode not in ("async", "sync"):
                raise ConfigError(f"{at}: mode must be async or sync, got {mode!r}")
            database.append(DatabaseHook(collection, frozenset(ACTIONS[a] for a in names), mode))
        elif kind == "webhook":
            _known(at, hook, {"type", "verification"})
            if webhook is not None:
                raise ConfigError(f"{at}: a function has at most one webhook hook")
            verification = hook.get("verification")
            if verification is None:
                webhook = WebhookHook(None, None, None, False, DEFAULT_TOLERANCE_SECONDS)
                continue
            if not isinstance(verification, dict):
                raise ConfigError(f"{at}: verification must be a mapping")
            _known(f"{at}.verification", verification, {"type", "header", "secret", "required", "tolerance_seconds"})
            algorithm = verification.get("type", "hmac-sha256")
            if algorithm not in ALGORITHMS:
                raise ConfigError(f"{at}.verification: type must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
            header = verification.get("header")
            if not isinstance(header, str) or not header:
                raise ConfigError(f"{at}.verification: header (the name of the signature header) is required")
            required = verification.get("required", False)
            tolerance = verification.get("tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
            if not isinstance(required, bool) or isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
                raise ConfigError(f"{at}.verification: required is true/false and tolerance_seconds a number")
            webhook = WebhookHook(algorithm, header, _resolve_env(verification.get("secret"), environ), required,
                                  float(tolerance))
        elif kind == "event":
            _known(at, hook, {"type", "event", "source", "action"})
            events.append(EventHook(str(hook.get("event") or "*"), str(hook.get("source") or "*"),
                                    str(hook.get("action") or "*")))
        else:
            raise ConfigError(f"{at}: type must be database, webhook or event, got {kind!r}")
    try:
        schedules = parse_schedules(function, manifest.get("schedules"))
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
    return FunctionHooks(function, retries, tuple(database), webhook, tuple(events), tuple(schedules))


def _known(where: str, entry: Mapping[str, Any], keys: set[str]) -> None:
    unknown = sorted(set(entry) - keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}")


@dataclass
class HookIndex:
    """Every function's hooks, indexed for the write path (a dict lookup per write)."""

    functions: dict[str, FunctionHooks] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    async_db: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    sync_db: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in sorted(self.functions):
            for hook in self.functions[name].database:
                target = self.async_db if hook.mode == "async" else self.sync_db
                for action in sorted(hook.actions):
                    target.setdefault((hook.collection, action), []).append(name)

    @property
    def schedules(self) -> list[ScheduleSpec]:
        return [s for name in sorted(self.functions) for s in self.functions[name].schedules]

    @property
    def busy(self) -> bool:
        """True when something here needs the background loop."""
        return any(h.database or h.webhook or h.events or h.schedules for h in self.functions.values())


# -- outgoing webhooks ----------------------------------------------------------------------------
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


def parse_outgoing(entries: list | None, environ: Mapping[str, str]) -> dict[str, OutgoingWebhook]:
    """alyx.yaml ``webhooks:`` → OutgoingWebhooks by name (ConfigError naming the entry)."""
    hooks: dict[str, OutgoingWebhook] = {}
    keys = {"name", "url", "secret", "collections", "actions", "header", "style", "retries", "timeout_seconds"}
    for index, entry in enumerate(entries or []):
        at = f"alyx.yaml: webhooks[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} must be a mapping with url and secret")
        _known(at, entry, keys)
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{at}: url must be an http(s) URL, got {url!r}")
        secret = _resolve_env(entry.get("secret"), environ)
        if not secret:
            raise ConfigError(f"{at}: secret is required (receivers check the signature with it)")
        name = str(entry.get("name") or f"webhook{index}")
        if name in hooks:
            raise ConfigError(f"{at}: two webhooks are named {name!r}")
        collections = entry.get("collections")
        if collections is not None and (not isinstance(collections, list) or
                                        not all(isinstance(c, str) for c in collections)):
            raise ConfigError(f"{at}: collections must be a list of collection names")
        actions = entry.get("actions") or ["insert", "update", "delete"]
        if not isinstance(actions, list) or any(a not in ACTIONS for a in actions):
            raise ConfigError(f"{at}: actions must be a list of insert, update, delete")
        style = entry.get("style", "timestamped")
        if style not in ("timestamped", "plain"):
            raise ConfigError(f"{at}: style must be timestamped or plain")
        retries = entry.get("retries")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ConfigError(f"{at}: retries must be a whole number >= 0")
        hooks[name] = OutgoingWebhook(name, url, secret, frozenset(collections) if collections is not None else None,
                                      frozenset(ACTIONS[a] for a in actions), str(entry.get("header") or
                                                                                  DEFAULT_SIGNATURE_HEADER),
                                      style, retries, float(entry.get("timeout_seconds") or 10.0))
    return hooks


def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# -- the service ----------------------------------------------------------------------------------
class Events:
    """Hooks, webhooks, custom events and the job runner of one app (see the module doc)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = services.config
        self.db = services.db
        self.models = build_event_models(self.db.peewee)
        self.jobs = JobQueue(self.db, self.models.job, self.config.events_backoff_base_ms / 1000,
                             float(self.config.events_backoff_max_seconds))
        self.leases = Leases(self.db, self.models.lease)
        self.outgoing = parse_outgoing(self.config.webhooks, os.environ)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.index = HookIndex()
        self._index_at = 0.0
        self._index_lock = threading.Lock()
        self._parsed: dict[str, tuple[str, FunctionHooks | str]] = {}  # function → (version, hooks or error)
        self._local = threading.local()
        self.scheduler = Scheduler(self.db, self.models.schedule, self.jobs, self.leases, self, self.worker_id,
                                   lease_seconds=self.config.schedules_lease_seconds,
                                   catch_up=self.config.schedules_catch_up, notify=lambda: self.loop.kick())
        self.loop = JobRunner(self.jobs, self.scheduler, RunnerSettings.of(self.config), run_job=self.run_job,
                              reclaim_stale=self.reclaim_stale)
        # Its record hooks (outbox, after_commit, sync_hooks) are registered by build_services (alyx/services.py).

    # -- lifecycle ---------------------------------------------------------------------------------
    def install(self) -> None:
        """Create the tables (called with the migrations, in the master before workers fork)."""
        self.db.peewee.create_tables(self.models.all, safe=True)

    def start(self) -> None:
        """Run jobs and schedules in this process (a worker, after fork), unless events.runner is off."""
        if self.config.events_runner == "off":
            return
        self.loop.wanted = True
        self.refresh(force=True)
        if self.index.busy or self.outgoing or self._queue_has_work():
            self.loop.ensure_started()

    def close(self) -> None:
        self.loop.stop()

    def _queue_has_work(self) -> bool:
        counts = self.jobs.counts()
        return bool(counts.get("pending") or counts.get("running"))

    # -- the hook index ----------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> HookIndex:
        """Re-read manifests that changed (at most once a second unless forced); returns the index."""
        if not force and time.monotonic() - self._index_at < INDEX_TTL_SECONDS:
            return self.index
        with self._index_lock:
            if not force and time.monotonic() - self._index_at < INDEX_TTL_SECONDS:
                return self.index
            registry = self.services.functions.registry
            hooks: dict[str, FunctionHooks] = {}
            errors: dict[str, str] = {}
            for name in registry.names():
                parsed = self._hooks_of(name)
                if isinstance(parsed, FunctionHooks):
                    hooks[name] = parsed
                elif parsed:
                    errors[name] = parsed
            self.index = HookIndex(hooks, errors)
            self._index_at = time.monotonic()
        if self.index.busy:
            self.loop.ensure_started()
        return self.index

    def _hooks_of(self, name: str) -> FunctionHooks | str | None:
        registry = self.services.functions.registry
        try:
            spec = registry.get(name)
        except AlyxError as exc:
            return None if exc.status == 404 else exc.message
        cached = self._parsed.get(name)
        if cached and cached[0] == spec.version:
            return cached[1]
        manifest_path = spec.root / "manifest.yaml"
        result: FunctionHooks | str
        if spec.root.name != name or not manifest_path.is_file():
            result = FunctionHooks(name)
        else:
            try:
                manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8")) or {}
                result = parse_hooks(name, manifest, registry.environ)
            except (ConfigError, yaml.YAMLError, OSError) as exc:
                result = str(exc)
                log.error("%s", exc)
        self._parsed[name] = (spec.version, result)
        return result

    def hooks(self, name: str) -> FunctionHooks:
        """The hooks of one function, fresh (404 when there is no such function, 500 when its manifest is wrong)."""
        parsed = self._hooks_of(name)
        if parsed is None:
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        if isinstance(parsed, str):
            raise AlyxError("function_config_error", parsed, 500)
        return parsed

    def retries_of(self, name: str) -> int:
        hooks = self.index.functions.get(name)
        return self.config.events_retries if hooks is None or hooks.retries is None else hooks.retries

    # -- outbox (inside the record's write transaction) ----------------------------------------
    def outbox(self, event: ChangeEvent) -> None:
        key = (event.collection, event.action)
        functions = self.index.async_db.get(key)
        outgoing = [h for h in self.outgoing.values() if h.matches(*key)] if self.outgoing else None
        if not functions and not outgoing:
            return
        hook_input: dict[str, Any] = {"document": event.record, "collection": event.collection,
                                      "action": HOOK_ACTION[event.action]}
        if event.previous is not None:
            hook_input["previous"] = event.previous
        rows = [job_row("function", name, "database", {"input": hook_input}, 1 + self.retries_of(name))
                for name in functions or ()]
        if outgoing:
            body = {"type": f"{event.collection}.{HOOK_ACTION[event.action]}", "created_at": _iso(utcnow()),
                    **hook_input}
            retries = self.config.events_retries
            rows += [job_row("outgoing", h.name, "database", {"event": body},
                             1 + (retries if h.retries is None else h.retries)) for h in outgoing]
        self.jobs.insert(rows)
        self._local.queued = True

    def after_commit(self, event: ChangeEvent) -> None:
        if getattr(self._local, "queued", False):
            self._local.queued = False
            self.loop.ensure_started()
            self.loop.wake()

    # -- sync hooks (before the write's transaction) -------------------------------------------
    def has_sync_hooks(self, collection: str, action: str) -> bool:
        return bool(self.refresh().sync_db.get((collection, action)))

    def sync_hooks(self, collection: str, action: str, document: dict[str, Any],
                    previous: dict[str, Any] | None) -> dict[str, Any] | None:
        changes: dict[str, Any] = {}
        functions = self.services.functions
        for name in self.index.sync_db.get((collection, action), []):
            try:
                spec = functions.spec(name)
            except AlyxError as exc:
                if exc.status == 404:  # removed since the index was read: it no longer guards anything
                    continue
                raise
            timeout = min(spec.limits.timeout, float(self.config.events_sync_timeout_seconds))
            spec = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, timeout=timeout))
            hook_input: dict[str, Any] = {"document": {**document, **changes}, "collection": collection,
                                          "action": HOOK_ACTION[action]}
            if previous is not None:
                hook_input["previous"] = previous
            result, execution_id = self.invoke(spec, "database", hook_input)
            if result.outcome == "success" and result.status < 400:
                changes.update(_changes_from(result, name))
                continue
            raise _rejection(name, result, execution_id, timeout)
        return changes

    # -- invoking functions --------------------------------------------------------------------
    def invoke(self, spec: FunctionSpec, trigger: str, hook_input: Any, *, body: bytes | None = None,
               headers: list[tuple[str, str]] | None = None, status: str | None = None,
               error: dict[str, Any] | None = None, record: bool = True) -> tuple[CallResult, str]:
        """Run a function for a trigger (no invoke rule: these callers are the server itself) and log it."""
        from alyx.sandbox import Call

        if body is None:
            body = orjson.dumps(hook_input)
            headers = [("content-type", "application/json"), *(headers or [])]
        call = Call("POST", f"/api/functions/{spec.name}", list(headers or []), body, None, hook_input, trigger)
        functions = self.services.functions
        started = utcnow()
        manager = functions.manager
        # req.alyx calls back into the API as the server itself: no user triggered this run.
        token = call.callback_token = functions.issue_callback_token(SYSTEM_PRINCIPAL, spec)
        try:
            result = manager.invoke(spec, call)
        finally:
            if token:
                functions.callback_tokens.revoke(token)
        execution_id = self.record(spec.name, spec.version, trigger, hook_input, result, started, status=status,
                                   error=error) if record else ""
        return result, execution_id

    def record(self, function: str, version: str, trigger: str, hook_input: Any, result: CallResult | None,
               started: dt.datetime, *, status: str | None = None, error: dict[str, Any] | None = None,
               output: Any = None, duration_ms: float | None = None) -> str:
        """One execution record (the execution log of alyx/executions.py)."""
        functions = self.services.functions
        if result is not None:
            content_type = next((v for k, v in result.headers if k.lower() == "content-type"), None)
            output = {"status": result.status, "content_type": content_type, "body": capped_text(result.body)}
        return functions.executions.record(
            function=function, version=version, trigger=trigger,
            status=status or (result.outcome if result is not None else "error"), input=_log_input(hook_input),
            output=output, error=error if error is not None else (result.error if result is not None else None),
            stdout=result.stdout if result else "", stderr=result.stderr if result else "",
            timings=result.timings if result else {},
            duration_ms=duration_ms if duration_ms is not None else (result.duration_ms if result else 0.0),
            tier=functions.tier or "", sandbox=result.sandbox if result else None, started_at=started)

    # -- jobs ----------------------------------------------------------------------------------
    def run_due_jobs(self, limit: int | None = None) -> int:
        """Claim and run due jobs in this thread (the loop and tests use it); returns how many ran."""
        claimed = self.jobs.claim(self.worker_id, limit or self.config.events_concurrency,
                                  float(self.config.events_lock_seconds))
        for job in claimed:
            self.run_job(job)
        return len(claimed)

    def run_job(self, job: Job) -> str:
        """One attempt of a claimed job; returns the job's new status (done | pending | dead | lost)."""
        if job.kind == "outgoing":
            return self._deliver_outgoing(job)
        functions = self.services.functions
        payload = job.payload or {}
        hook_input = payload.get("input")
        started = utcnow()
        try:
            spec = functions.spec(job.target)
        except AlyxError as exc:
            error = {"code": exc.code, "message": exc.message, "details": {}}
            return self._failed(job, error, lambda status, err: self.record(
                job.target, "", job.trigger_type, hook_input, None, started, status=status, error=err))
        body = headers = None
        if job.trigger_type == "webhook":
            body = (hook_input.get("body") or "").encode()
            headers = [(k, v) for k, v in (hook_input.get("headers") or {}).items()
                       if k.lower() not in ("content-length", "host")]
        # Not x-alyx-*: the sandbox manager reserves those names for the runtime protocol.
        headers = [*(headers or []), ("alyx-job-id", str(job.id)), ("alyx-attempt", str(job.attempts))]
        try:
            result, _ = self.invoke(spec, job.trigger_type, hook_input, body=body, headers=headers, record=False)
        except AlyxError as exc:  # no sandbox tier, or shutting down
            error = {"code": exc.code, "message": exc.message, "details": {}}
            return self._failed(job, error, lambda status, err: self.record(
                spec.name, spec.version, job.trigger_type, hook_input, None, started, status=status, error=err))
        if result.outcome == "success" and result.status < 500:
            with self.db.connection(), self.db.write():
                execution_id = self.record(spec.name, spec.version, job.trigger_type, hook_input, result, started)
                return "done" if self.jobs.succeed(job, self.worker_id, execution_id) else "lost"
        error = dict(result.error or {"code": "function_error",
                                      "message": f"The function answered with status {result.status}."})
        return self._failed(job, error, lambda status, err: self.record(
            spec.name, spec.version, job.trigger_type, hook_input, result, started,
            status=status if status == "dead_letter" or result.outcome != "success" else "error", error=err))

    def _failed(self, job: Job, error: dict[str, Any], record: Any) -> str:
        details = dict(error.get("details") or {})
        details.update({"job_id": job.id, "attempt": job.attempts, "max_attempts": job.max_attempts,
                        "retrying": not job.final_attempt})
        error = {**error, "details": details}
        with self.db.connection(), self.db.write():
            execution_id = record("dead_letter" if job.final_attempt else "error", error)
            status = self.jobs.fail(job, self.worker_id, error, execution_id)
        if status == "dead":
            log.warning("job %s (%s %s) is dead after %d attempts: %s", job.id, job.trigger_type, job.target,
                        job.attempts, error.get("message"))
        return status

    def reclaim_stale(self) -> None:
        """Jobs whose worker died mid-attempt: log the lost attempt, retry or dead-letter them."""
        for job, status in self.jobs.reclaim_stale():
            hook_input = (job.payload or {}).get("input")
            error = {"code": "worker_lost", "message": "The worker running this attempt stopped before it finished.",
                     "details": {"job_id": job.id, "attempt": job.attempts, "max_attempts": job.max_attempts,
                                 "retrying": status == "pending"}}
            name = job.target if job.kind == "function" else f"webhook:{job.target}"
            self.record(name, "", job.trigger_type, hook_input, None, utcnow(),
                        status="dead_letter" if status == "dead" else "crashed", error=error)
            log.warning("job %s lost its worker during attempt %d; now %s", job.id, job.attempts, status)

    def _deliver_outgoing(self, job: Job) -> str:
        event = (job.payload or {}).get("event")
        started = utcnow()
        hook = self.outgoing.get(job.target)
        name = f"webhook:{job.target}"
        if hook is None:
            error = {"code": "webhook_removed", "message": f"No outgoing webhook {job.target!r} in alyx.yaml now.",
                     "details": {}}
            return self._failed(job, error, lambda status, err: self.record(name, "", "database", event, None,
                                                                            started, status=status, error=err))
        body = orjson.dumps(event)
        signature = sign(body, hook.secret) if hook.style == "timestamped" else _sign_plain(body, hook.secret)
        headers = {"Content-Type": "application/json", "User-Agent": "alyx-webhooks", hook.header: signature,
                   "X-Alyx-Event-Id": str(job.id), "X-Alyx-Attempt": str(job.attempts)}
        t0 = time.monotonic()
        try:
            response = requests.post(hook.url, data=body, headers=headers, timeout=hook.timeout_seconds,
                                     allow_redirects=False)
            status_code, text = response.status_code, response.content
            problem = None if 200 <= status_code < 300 else f"The receiver answered {status_code}."
        except requests.RequestException as exc:
            status_code, text, problem = 0, b"", f"{type(exc).__name__}: {exc}"
        duration = round((time.monotonic() - t0) * 1000, 3)
        output = {"status": status_code, "url": hook.url, "body": capped_text(text)}
        if problem is None:
            with self.db.connection(), self.db.write():
                execution_id = self.record(name, "", "database", event, None, started, status="success",
                                           error=None, output=output, duration_ms=duration)
                return "done" if self.jobs.succeed(job, self.worker_id, execution_id) else "lost"
        error = {"code": "webhook_delivery_failed", "message": problem, "details": {"status": status_code}}
        return self._failed(job, error, lambda status, err: self.record(
            name, "", "database", event, None, started, status=status, error=err, output=output,
            duration_ms=duration))

    # -- incoming webhooks ---------------------------------------------------------------------
    def receive_webhook(self, name: str, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """Verify, then queue one delivery; 401 (after logging the call) when verification is required and fails."""
        hooks = self.hooks(name)
        if hooks.webhook is None:
            raise AlyxError("not_found", f"Function {name!r} has no webhook hook.", 404)
        hook = hooks.webhook
        if hook.algorithm is None:
            result = Verification(False, "this webhook has no verification configured")
        else:
            header_value = next((v for k, v in headers.items() if k.lower() == hook.header.lower()), None)
            result = verify(body, header_value, hook.secret, hook.algorithm, hook.tolerance_seconds)
        kept_headers = {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}
        hook_input = {"body": body.decode("utf-8", "replace"), "headers": kept_headers,
                      "verified": result.verified, "verification_error": result.error}
        if hook.required and not result.verified:
            spec = self.services.functions.spec(name)
            error = {"code": "invalid_signature", "message": f"Webhook signature check failed: {result.error}.",
                     "details": {}}
            self.record(name, spec.version, "webhook", hook_input, None, utcnow(), status="denied", error=error)
            raise AlyxError("invalid_signature", error["message"], 401)
        self.refresh()
        job_id = self.jobs.enqueue("function", name, "webhook", {"input": hook_input}, 1 + self.retries_of(name))
        self.loop.ensure_started()
        self.loop.wake()
        return {"job_id": job_id, "verified": result.verified, "verification_error": result.error}

    # -- custom events -------------------------------------------------------------------------
    def publish(self, event: Any) -> dict[str, Any]:
        """Queue an event {type, source?, action?, payload?} for every function whose hooks subscribe to it."""
        if not isinstance(event, dict) or set(event) - {"type", "source", "action", "payload"}:
            raise bad_request("An event is an object {type, source?, action?, payload?}.")
        kind = event.get("type")
        if not isinstance(kind, str) or not kind or len(kind) > 200:
            raise bad_request("An event needs a type (a string like 'order.paid').")
        for key in ("source", "action"):
            if event.get(key) is not None and not isinstance(event[key], str):
                raise bad_request(f"event.{key} must be a string.")
        clean = {"type": kind, "source": event.get("source"), "action": event.get("action"),
                 "payload": event.get("payload")}
        index = self.refresh()
        targets = [name for name, hooks in sorted(index.functions.items())
                   if any(_event_matches(h, clean) for h in hooks.events)]
        rows = [job_row("function", name, "event", {"input": clean}, 1 + self.retries_of(name)) for name in targets]
        if rows:
            with self.db.connection(), self.db.write():
                self.jobs.insert(rows)
            self.loop.ensure_started()
            self.loop.wake()
        return {"delivered_to": targets}


def _event_matches(hook: EventHook, event: Mapping[str, Any]) -> bool:
    return (fnmatch.fnmatchcase(event["type"], hook.type)
            and fnmatch.fnmatchcase(event.get("source") or "", hook.source)
            and fnmatch.fnmatchcase(event.get("action") or "", hook.action))


def _changes_from(result: CallResult, name: str) -> dict[str, Any]:
    """A sync hook's 2xx answer: `{"changes": {...}}` sets fields; anything else changes nothing."""
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
        raise AlyxError("hook_error", f"The sync hook {name!r} answered changes that are not an object.", 500)
    return changes


def _rejection(name: str, result: CallResult, execution_id: str, timeout: float) -> AlyxError:
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
    details = {k: v for k, v in (error.get("details") or {}).items() if k in PUBLIC_DETAILS}
    details["execution_id"] = execution_id
    return AlyxError("hook_failed", f"The {name!r} hook failed, so the write was not made: "
                     f"{error.get('message') or result.outcome}", 502, details, headers)


def _log_input(value: Any) -> Any:
    """What an execution record keeps of the input: big webhook bodies are capped."""
    if isinstance(value, dict) and isinstance(value.get("body"), str) and len(value["body"]) > 16 * 1024:
        return {**value, "body": capped_text(value["body"])}
    return value
