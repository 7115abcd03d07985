"""One function version's pool of bound sandboxes, and which of its idle ones should leave."""
from __future__ import annotations

from alyx.sandbox.protocol import LoadError
from alyx.sandbox.registry import FunctionSpec
from alyx.sandbox.tiers import Sandbox


class FunctionPool:
    """The sandboxes bound to one version of a function (the manager's lock guards it)."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.instances: list[Sandbox] = []
        self.starting = 0
        self.load_error: LoadError | None = None
        self.retired = False  # a newer version exists: no new calls; leaves when idle

    def take_expired(self, now: float, idle_ttl: float) -> list[Sandbox]:
        """Remove and return the idle sandboxes that should stop: dead ones, all of a retired version,
        and those idle past ``idle_ttl`` beyond the ``min_warm`` most recently used."""
        keep = 0 if self.retired else self.spec.limits.min_warm
        idle = sorted((sb for sb in self.instances if sb.active == 0), key=lambda sb: sb.last_used, reverse=True)
        expired: list[Sandbox] = []
        for sb in idle:
            if not sb.alive() or self.retired or (now - sb.last_used > idle_ttl and keep <= 0):
                expired.append(sb)
            else:
                keep -= 1
        for sb in expired:
            self.instances.remove(sb)
        return expired
