"""Functions in warm sandboxes: discovery, tiers, pools and the runtime protocol — no Flask, no SQL.

    registry = FunctionRegistry(Path("functions"))
    manager = SandboxManager(choose_tier("auto"))
    result = manager.invoke(registry.get("hello"), Call("GET", "/api/functions/hello"))
"""
from __future__ import annotations

import logging

from alyx.sandbox.calls import Call, CallResult, PoolSettings
from alyx.sandbox.manager import SandboxManager
from alyx.sandbox.manifest import Limits
from alyx.sandbox.protocol import request_target
from alyx.sandbox.registry import FunctionRegistry, FunctionSpec
from alyx.sandbox.tiers import BwrapTier, ProcessTier, Profile, Tier, bwrap_problem

log = logging.getLogger("alyx.sandbox")

__all__ = ["Call", "CallResult", "FunctionRegistry", "FunctionSpec", "Limits", "PoolSettings", "Profile",
           "SandboxManager", "Tier", "choose_tier", "detect_tier", "request_target", "tier_problems"]


def tier_problems(name: str) -> str | None:
    """None when the tier can run here, else why not."""
    if name == "process":
        return None
    if name == "bwrap":
        return bwrap_problem()
    if name == "docker":
        from alyx.sandbox.docker_tier import docker_problem

        return docker_problem()
    return f"unknown sandbox tier {name!r}"


_detected: dict[str, str] = {}


def detect_tier(setting: str) -> str:
    """The tier `choose_tier(setting)` would pick (cached per process), or "unavailable: <why>"."""
    if setting not in _detected:
        if setting == "auto":
            _detected[setting] = next((n for n in ("docker", "bwrap") if tier_problems(n) is None), "process")
        else:
            problem = tier_problems(setting)
            _detected[setting] = setting if problem is None else f"unavailable: {problem}"
    return _detected[setting]


def choose_tier(setting: str) -> Tier:
    """The tier for functions.sandbox: `auto` picks the strongest available (docker, bwrap, process)."""
    if setting == "auto":
        for name in ("docker", "bwrap"):
            problem = tier_problems(name)
            if problem is None:
                return choose_tier(name)
            log.info("sandbox tier %s not available: %s", name, problem)
        return ProcessTier()
    problem = tier_problems(setting)
    if problem is not None:
        raise RuntimeError(f"functions.sandbox is {setting!r} but {problem}")
    if setting == "docker":
        from alyx.sandbox.docker_tier import DockerTier

        return DockerTier()
    if setting == "bwrap":
        return BwrapTier()
    return ProcessTier()
