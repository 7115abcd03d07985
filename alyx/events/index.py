"""What manifests listen to: every function's hooks, read from the registry and indexed for the write path."""
from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alyx.errors import AlyxError
from alyx.sandbox import FunctionRegistry
from alyx.sandbox.manifest import EventHook, FunctionHooks
from alyx.schedules import ScheduleSpec

INDEX_TTL_SECONDS = 1.0


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
        return any(h.database or (h.webhook is not None and h.webhook.mode == "async") or h.events or h.schedules
                   for h in self.functions.values())

    def subscribers(self, event: Mapping[str, Any]) -> list[str]:
        """The functions whose event hooks match a custom event, by name."""
        return [name for name, hooks in sorted(self.functions.items())
                if any(event_matches(h, event) for h in hooks.events)]


def event_matches(hook: EventHook, event: Mapping[str, Any]) -> bool:
    return (fnmatch.fnmatchcase(event["type"], hook.type)
            and fnmatch.fnmatchcase(event.get("source") or "", hook.source)
            and fnmatch.fnmatchcase(event.get("action") or "", hook.action))


class HookCatalog:
    """The current HookIndex, re-read from the registry at most once a second (or when forced)."""

    def __init__(self, registry: FunctionRegistry, default_retries: int,
                 on_busy: Callable[[], None] = lambda: None) -> None:
        self.registry = registry
        self.default_retries = default_retries
        self.on_busy = on_busy  # called after a refresh that found something for the background loop
        self.index = HookIndex()
        self._index_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> HookIndex:
        """Re-read manifests that changed (at most once a second unless forced); returns the index."""
        if not force and time.monotonic() - self._index_at < INDEX_TTL_SECONDS:
            return self.index
        with self._lock:
            if not force and time.monotonic() - self._index_at < INDEX_TTL_SECONDS:
                return self.index
            hooks: dict[str, FunctionHooks] = {}
            errors: dict[str, str] = {}
            for name in self.registry.names():
                try:
                    spec = self.registry.get(name)
                except AlyxError as exc:
                    if exc.status != 404:
                        errors[name] = exc.message
                    continue
                hooks[name] = spec.hooks or FunctionHooks(name)
            self.index = HookIndex(hooks, errors)
            self._index_at = time.monotonic()
        if self.index.busy:
            self.on_busy()
        return self.index

    def hooks(self, name: str) -> FunctionHooks:
        """The hooks of one function, fresh (404 when there is no such function, 503 when its manifest is wrong)."""
        return self.registry.get(name).hooks or FunctionHooks(name)

    def retries_of(self, name: str) -> int:
        hooks = self.index.functions.get(name)
        return self.default_retries if hooks is None or hooks.retries is None else hooks.retries
