"""manifest.yaml → one checked Manifest (limits, env, rules, hooks, schedules, retries), errors at file:line.

The one reader of a function's manifest: the registry builds FunctionSpecs from it and the events
service reads the hooks it carries. Every problem is a ConfigError reading
``functions/<name>/manifest.yaml:<line>: <key>: <message>``. Durations are seconds or ``1s``,
``500ms``, ``2m``; sizes are megabytes or ``128MB``, ``128m``, ``1G`` (alyx/units.py). No Flask, no SQL.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alyx.schedules import ScheduleSpec, parse_schedules
from alyx.signatures import ALGORITHMS, DEFAULT_TOLERANCE_SECONDS, SCHEMES
from alyx.units import DURATION_HINT, SIZE_HINT, parse_duration, parse_size_mb
from alyx.yamlfile import Located, Reader, describe, expand_env, load_yaml

RUNTIMES = ("python", "node", "go")
MANIFEST_KEYS = {"name", "runtime", "timeout", "memory", "cpu", "max_instances", "concurrency", "min_warm",
                 "network", "env", "rules", "handler", "entry", "hooks", "schedules", "retries", "http", "run_as"}
ACTIONS = {"insert": "create", "create": "create", "update": "update", "delete": "delete"}  # manifest → ChangeEvent
HOOK_KINDS = ("database", "webhook", "event")
RUN_AS = ("caller", "system")  # who a trigger run is when it calls the API back (req.alyx)
WEBHOOK_MODES = ("sync", "async")  # sync (the default): the function's response is the HTTP answer


@dataclass(frozen=True)
class Limits:
    """Resource limits and pool sizing of one function (manifest keys of the same names)."""

    timeout: float = 10.0  # seconds, from the call's arrival (queueing counts)
    memory: int = 128  # MB
    cpu: float = 1.0  # cores
    max_instances: int = 4
    concurrency: int = 1  # calls at once inside one sandbox
    min_warm: int = 0  # bound sandboxes kept warm even when idle
    network: bool = False


@dataclass(frozen=True)
class DatabaseHook:
    collection: str
    actions: frozenset[str]  # create | update | delete
    mode: str  # async | sync


@dataclass(frozen=True)
class WebhookHook:
    """A function's ``type: webhook`` hook: how deliveries are verified, and whether they are answered now."""

    algorithm: str | None  # None: no verification configured
    header: str | None
    secret: str | None
    required: bool
    tolerance_seconds: float
    mode: str = "sync"  # sync: run now, the function answers the sender | async: queue it, answer 202
    scheme: str = "any"  # the one signature form accepted (alyx/signatures.py SCHEMES)


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
    http: bool = True  # served at /api/functions/<name>: by default only functions without triggers
    run_as: str = "caller"  # caller: the trigger's own (publisher; a webhook's sender is anonymous) | system

    @property
    def triggered(self) -> bool:
        """Whether anything but HTTP runs it (a webhook, database hook, event or schedule)."""
        return bool(self.database or self.webhook or self.events or self.schedules)


@dataclass(frozen=True)
class Manifest:
    """A function's manifest, checked (a function without one gets the defaults)."""

    hooks: FunctionHooks
    runtime: str | None = None
    entry: str | None = None
    handler: str = "handler"
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    invoke_rule: str | None = None


def parse_manifest(function: str, text: str, path: str, environ: Mapping[str, str]) -> Manifest:
    """The text of ``path`` → Manifest; ConfigError ``<path>:<line>: <key>: <message>`` at the first problem."""
    return read_manifest(function, load_yaml(text, path), Reader(path), environ)


def read_manifest(function: str, data: Any, reader: Reader, environ: Mapping[str, str]) -> Manifest:
    """Loaded manifest YAML (None: an empty file) → Manifest, checked by ``reader``."""
    top = reader.mapping(Located() if data is None else data, "top level", MANIFEST_KEYS)
    runtime = _value(reader, top, "runtime", _choice(RUNTIMES), None)
    limits = Limits(
        timeout=_value(reader, top, "timeout", _duration(0.01), 10.0),
        memory=_value(reader, top, "memory", _size(32), 128),
        cpu=_value(reader, top, "cpu", _number(float, 0.01), 1.0),
        max_instances=_value(reader, top, "max_instances", _number(int, 1), 4),
        concurrency=_value(reader, top, "concurrency", _number(int, 1), 1),
        min_warm=_value(reader, top, "min_warm", _number(int, 0), 0),
        network=_value(reader, top, "network", _boolean, False),
    )
    raw_env = top.get("env") or {}
    if not isinstance(raw_env, dict):
        reader.fail(top, "env", f"expected a mapping of names to values, got {describe(raw_env)}", key="env")
    env = {str(k): expand_env(v, environ) for k, v in raw_env.items()}
    rules = top.get("rules") or {}
    if not isinstance(rules, dict) or set(rules) - {"invoke"}:
        reader.fail(top, "rules", "may only hold 'invoke' (a CEL expression)", key="rules")
    rule = rules.get("invoke")
    if rule is not None and not isinstance(rule, (str, bool)):
        reader.fail(rules, "rules.invoke", f"expected a CEL expression string, got {describe(rule)}", key="invoke")
    entry = _value(reader, top, "entry", _text, None)
    return Manifest(read_hooks(function, top, reader, environ), runtime, entry,
                    str(top.get("handler") or "handler"), limits, env,
                    str(rule).lower() if isinstance(rule, bool) else rule)


def read_hooks(function: str, top: Mapping[Any, Any], reader: Reader, environ: Mapping[str, str]) -> FunctionHooks:
    """The ``hooks:``, ``schedules:`` and ``retries:`` of a loaded manifest → FunctionHooks."""
    retries = _value(reader, top, "retries", _number(int, 0), None)
    raw_hooks = top.get("hooks") or []
    if not isinstance(raw_hooks, list):
        reader.fail(top, "hooks", f"expected a list, got {describe(raw_hooks)}", key="hooks")
    database: list[DatabaseHook] = []
    events: list[EventHook] = []
    webhook: WebhookHook | None = None
    for index, hook in enumerate(raw_hooks):
        at = f"hooks[{index}]"
        if not isinstance(hook, dict):
            reader.fail(top, at, f"expected a mapping, got {describe(hook)}", key="hooks")
        kind = hook.get("type")
        if kind == "database":
            database.append(_database_hook(reader, hook, at))
        elif kind == "webhook":
            if webhook is not None:
                reader.fail(hook, at, "a function has at most one webhook hook")
            webhook = _webhook_hook(reader, hook, at, environ)
        elif kind == "event":
            reader.mapping(hook, at, {"type", "event", "source", "action"})
            events.append(EventHook(str(hook.get("event") or "*"), str(hook.get("source") or "*"),
                                    str(hook.get("action") or "*")))
        else:
            reader.fail(hook, f"{at}.type", f"expected one of {', '.join(HOOK_KINDS)}, got {describe(kind)}",
                        key="type")
    schedules = parse_schedules(function, top.get("schedules"), reader=reader, parent=top)
    triggered = bool(database or webhook or events or schedules)
    # A function with triggers runs with its manifest's secrets on their behalf: serving it over HTTP
    # too (unsigned, to anyone) is an opt-in.
    http = _value(reader, top, "http", _boolean, not triggered)
    run_as = _value(reader, top, "run_as", _choice(RUN_AS), "caller")
    return FunctionHooks(function, retries, tuple(database), webhook, tuple(events), tuple(schedules), http, run_as)


def _database_hook(reader: Reader, hook: dict[Any, Any], at: str) -> DatabaseHook:
    reader.mapping(hook, at, {"type", "source", "collection", "action", "actions", "mode"})
    collection = hook.get("source") or hook.get("collection")
    if not isinstance(collection, str) or not collection:
        reader.fail(hook, at, "source (the collection) is required")
    action_key = "actions" if "actions" in hook else "action"
    raw_actions = hook.get(action_key, "*")
    names = raw_actions if isinstance(raw_actions, list) else [raw_actions]
    if names == ["*"]:
        names = ["insert", "update", "delete"]
    if not names or any(not isinstance(a, str) or a not in ACTIONS for a in names):
        reader.fail(hook, f"{at}.{action_key}", "expected insert, update or delete (or a list of them), "
                    f"got {raw_actions!r}", key=action_key)
    mode = hook.get("mode", "async")
    if mode not in ("async", "sync"):
        reader.fail(hook, f"{at}.mode", f"expected async or sync, got {mode!r}", key="mode")
    return DatabaseHook(collection, frozenset(ACTIONS[a] for a in names), mode)


def _webhook_hook(reader: Reader, hook: dict[Any, Any], at: str, environ: Mapping[str, str]) -> WebhookHook:
    reader.mapping(hook, at, {"type", "verification", "mode"})
    mode = _value(reader, hook, "mode", _choice(WEBHOOK_MODES), "sync", f"{at}.")
    raw = hook.get("verification")
    if raw is None:
        return WebhookHook(None, None, None, False, DEFAULT_TOLERANCE_SECONDS, mode)
    at = f"{at}.verification"
    verification = reader.mapping(raw, at, {"type", "header", "secret", "required", "tolerance_seconds", "scheme"},
                                  parent=hook, key="verification")
    algorithm = verification.get("type", "hmac-sha256")
    if algorithm not in ALGORITHMS:
        reader.fail(verification, f"{at}.type", f"expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}",
                    key="type")
    header = verification.get("header")
    if not isinstance(header, str) or not header:
        reader.fail(verification, f"{at}.header", "the name of the signature header is required", key="header")
    required = _value(reader, verification, "required", _boolean, False, f"{at}.")
    tolerance = _value(reader, verification, "tolerance_seconds", _duration(0), float(DEFAULT_TOLERANCE_SECONDS),
                       f"{at}.")
    # A tolerance only means something for timestamped signatures: asking for one pins that scheme.
    scheme = _value(reader, verification, "scheme", _choice(SCHEMES),
                    "timestamped" if "tolerance_seconds" in verification else "any", f"{at}.")
    secret = verification.get("secret")
    return WebhookHook(algorithm, header, None if secret is None else expand_env(secret, environ), required,
                       tolerance, mode, scheme)


# -- one key each ---------------------------------------------------------------------------------
def _value(reader: Reader, node: Mapping[Any, Any], key: str, parse: Callable[[Any], Any], default: Any,
           prefix: str = "") -> Any:
    """``parse(node[key])`` (``default`` when the key is absent); its ValueError becomes the file:line error."""
    if key not in node:
        return default
    try:
        return parse(node[key])
    except ValueError as exc:
        reader.fail(node, f"{prefix}{key}", str(exc), key=key)


def _number(kind: type, minimum: float) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ValueError(f"expected {'a whole number' if kind is int else 'a number'}, got {describe(value)}")
        if value < minimum:
            raise ValueError(f"expected at least {minimum:g}, got {value!r}")
        return kind(value)
    return parse


def _measure(convert: Callable[[Any], float], what: str, minimum: float, unit: str) -> Callable[[Any], Any]:
    """A parser of durations or sizes: ``convert`` (alyx/units.py), then at least ``minimum``."""
    def parse(value: Any) -> Any:
        try:
            amount = convert(value)
        except ValueError:
            raise ValueError(f"expected {what}, got {describe(value)}") from None
        if amount < minimum:
            raise ValueError(f"expected at least {minimum:g}{unit}, got {describe(value)}")
        return amount
    return parse


def _duration(minimum: float) -> Callable[[Any], float]:
    return _measure(parse_duration, f"a duration ({DURATION_HINT})", minimum, "s")


def _size(minimum: int) -> Callable[[Any], int]:
    return _measure(parse_size_mb, f"a size ({SIZE_HINT})", minimum, " MB")


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}, got {describe(value)}")
        return str(value)
    return parse


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file name, got {describe(value)}")
    return value
