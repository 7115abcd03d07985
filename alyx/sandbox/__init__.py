"""Functions in warm sandboxes: discovery, tiers, pools and the runtime protocol — no Flask, no SQL.

    registry = FunctionRegistry(Path("functions"))
    manager = SandboxManager(choose_tier("auto"))
    result = manager.invoke(registry.get("hello"), Call("GET", "/api/functions/hello"))
"""
from __future__ import annotations

import logging

from alyx.sandbox.bwrap_tier import BwrapTier, bwrap_problem
from alyx.sandbox.calls import Call, CallResult, PoolSettings
from alyx.sandbox.manager import SandboxManager
from alyx.sandbox.manifest import Limits
from alyx.sandbox.protocol import request_target
from alyx.sandbox.registry import FunctionRegistry, FunctionSpec
from alyx.sandbox.tiers import ProcessTier, Profile, Tier

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


_detected: dict[tuple[str, bool], str] = {}
ISOLATED = ("docker", "bwrap")  # what `auto` picks from, strongest first


def _no_isolation(problems: dict[str, str]) -> str:
    why = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
    return (f"functions.sandbox is 'auto' but no isolating tier can run here ({why}); outside development Alyx "
            "does not fall back to the unisolated process tier: install Docker or bubblewrap, or set "
            "functions.sandbox: process to accept running functions without isolation")


def detect_tier(setting: str, development: bool = True) -> str:
    """The tier `choose_tier(setting, development)` would pick (cached per process), or "unavailable: <why>"."""
    key = (setting, development)
    if key not in _detected:
        if setting == "auto":
            problems = {n: tier_problems(n) or "" for n in ISOLATED}
            usable = next((n for n in ISOLATED if not problems[n]), None)
            _detected[key] = usable or ("process" if development else f"unavailable: {_no_isolation(problems)}")
        else:
            problem = tier_problems(setting)
            _detected[key] = setting if problem is None else f"unavailable: {problem}"
    return _detected[key]


def choose_tier(setting: str, development: bool = True) -> Tier:
    """The tier for functions.sandbox: `auto` picks the strongest available (docker, bwrap), and the
    unisolated process tier only in development; RuntimeError (why) when none can run."""
    if setting == "auto":
        problems: dict[str, str] = {}
        for name in ISOLATED:
            problem = tier_problems(name)
            if problem is None:
                return choose_tier(name)
            problems[name] = problem
            log.info("sandbox tier %s not available: %s", name, problem)
        if not development:
            raise RuntimeError(_no_isolation(problems))
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
