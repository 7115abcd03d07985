"""Warm pools of sandboxes and the invocation path through them.

Generic sandboxes are pre-started per runtime; a call takes one, binds it to its function's
version with /init, and it stays with that version until evicted (never back to the generic
pool). Per function: at most ``max_instances`` sandboxes, ``concurrency`` calls in each; callers
beyond that queue, and their wait counts against the deadline. Idle sandboxes leave after a TTL;
under the memory budget the least recently used idle one leaves first; a busy one never does.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from alyx.background import Loop, spawn
from alyx.sandbox import golang
from alyx.sandbox.calls import (
    Call,
    CallResult,
    Fault,
    PoolSettings,
    QueueTimeout,
    acquire_fault,
    bad_response_fault,
    invoke_fault,
    request_headers,
    result_of,
)
from alyx.sandbox.pools import FunctionPool
from alyx.sandbox.protocol import LoadError, RawResponse, RuntimeGone, RuntimeTimeout
from alyx.sandbox.registry import FunctionSpec
from alyx.sandbox.tiers import OUTPUT_WAIT, Profile, Sandbox, Tier

log = logging.getLogger("alyx.sandbox")

DEFAULT_PROFILE_MEMORY = 128


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class SandboxManager:
    """Owns every sandbox of one server process; thread- and greenlet-safe; knows no Flask or SQL."""

    def __init__(self, tier: Tier, settings: PoolSettings | None = None) -> None:
        self.tier = tier
        self.settings = settings or PoolSettings()
        self._cond = threading.Condition(threading.RLock())
        self._pools: dict[str, FunctionPool] = {}
        self._retired: list[FunctionPool] = []
        self._generic: dict[Profile, list[Sandbox]] = {}
        self._refilling: dict[Profile, int] = {}
        self._warming: set[str] = set()
        self._runtimes: set[str] = set()
        self._all: set[Sandbox] = set()
        self._closed = False
        interval = self.settings.reap_interval
        self._reaper_due = False  # the first round comes one interval after the start
        self._reaper = Loop("alyx-sandbox-reaper", self._reap_step, backoff=interval, max_backoff=interval)
        self._reaper.start()

    # -- public ----------------------------------------------------------------------------------
    def prewarm(self, runtimes: set[str] | list[str]) -> None:
        """Keep `warm_per_runtime` generic sandboxes started for these runtimes."""
        with self._cond:
            self._runtimes |= set(runtimes)
        for runtime in runtimes:
            self._refill_async(Profile(runtime, DEFAULT_PROFILE_MEMORY))

    def keep_warm(self, spec: FunctionSpec) -> None:
        """Start `min_warm` bound sandboxes for a function now (the reaper keeps them there)."""
        with self._cond:
            self._runtimes.add(spec.runtime)
            pool = self._pool_for(spec)
            if spec.limits.min_warm <= len(pool.instances) + pool.starting or spec.key in self._warming:
                return
            self._warming.add(spec.key)
        spawn(self._warm_function, spec, name=f"alyx-sandbox-warm-{spec.name}")

    def refresh(self, spec: FunctionSpec) -> None:
        """A function changed on disk: switch to its new version now, stop the old version's idle
        sandboxes (busy ones finish their calls first), and warm the new one if it has min_warm."""
        idle: list[Sandbox] = []
        with self._cond:
            if self._closed or spec.name not in self._pools:
                return
            self._pool_for(spec)
            for pool in self._retired:
                for sb in [sb for sb in pool.instances if sb.active == 0]:
                    pool.instances.remove(sb)
                    self._all.discard(sb)
                    idle.append(sb)
            self._retired = [p for p in self._retired if p.instances]
        for sb in idle:
            sb.stop()
        if spec.limits.min_warm:
            self.keep_warm(spec)

    def invoke(self, spec: FunctionSpec, call: Call) -> CallResult:
        """Run one call; function faults come back as a CallResult with an error, never raise."""
        began = time.monotonic()
        deadline = began + spec.limits.timeout
        timings = {"queue": 0.0, "acquire": 0.0, "init": 0.0, "handler": 0.0}
        with self._cond:
            self._runtimes.add(spec.runtime)
        try:
            pool, sandbox = self._acquire(spec, deadline, timings)
        except (QueueTimeout, LoadError, RuntimeTimeout, RuntimeGone) as exc:
            self._refill_default(spec.runtime)
            output = (exc.stdout, exc.stderr) if isinstance(exc, LoadError) else ("", "")
            return acquire_fault(spec, exc).result(*output, timings, _ms(time.monotonic() - began), None,
                                                   spec.version)
        deadline += timings["acquire"] / 1000
        fresh = sandbox.calls == 0  # then it may have taken the warm one: start the next after this call
        try:
            return self._run(spec, call, pool, sandbox, began, deadline, timings)
        finally:
            if fresh:
                self._refill_default(spec.runtime)

    def shutdown(self) -> None:
        """Stop every sandbox this manager started; later calls fail."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            victims = list(self._all)
            self._all.clear()
            self._pools.clear()
            self._retired.clear()
            self._generic.clear()
            self._cond.notify_all()
        self._reaper.stop(timeout=0)
        threads = [spawn(sb.stop, name=f"alyx-sandbox-{sb.id}-stop") for sb in victims]
        for t in threads:
            t.join(timeout=30)
        self.tier.close()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "tier": self.tier.name,
                "memory_used_mb": sum(sb.profile.memory for sb in self._all),
                "memory_budget_mb": self.settings.memory_budget,
                "generic": {f"{p.runtime}/{p.memory}M": len(v) for p, v in self._generic.items()},
                "functions": {name: {"version": pool.spec.version[:12], "instances": [sb.stats() for sb in
                                                                                         pool.instances]}
                              for name, pool in self._pools.items()},
                "sandboxes": len(self._all),
            }

    def sandboxes(self) -> list[Sandbox]:
        with self._cond:
            return list(self._all)

    # -- acquiring -------------------------------------------------------------------------------
    def _pool_for(self, spec: FunctionSpec) -> FunctionPool:
        pool = self._pools.get(spec.name)
        if pool is not None and pool.spec.version == spec.version:
            return pool
        if pool is not None:  # a new version: the old one takes no new calls and leaves when idle
            pool.retired = True
            self._retired.append(pool)
            self._cond.notify_all()
        pool = self._pools[spec.name] = FunctionPool(spec)
        return pool

    def _acquire(self, spec: FunctionSpec, deadline: float, timings: dict[str, float]
                 ) -> tuple[FunctionPool, Sandbox]:
        t0 = time.monotonic()
        dead: list[Sandbox] = []
        with self._cond:
            pool = self._pool_for(spec)
            while True:
                if self._closed:
                    raise RuntimeGone("the server is shutting down")
                if pool.retired:  # a newer version arrived while we queued: keep to our version
                    pool = self._pool_for(spec) if self._pools[spec.name].spec.version == spec.version else pool
                if pool.load_error:
                    raise pool.load_error
                for sb in list(pool.instances):
                    if sb.active == 0 and not sb.alive():
                        pool.instances.remove(sb)
                        self._all.discard(sb)
                        dead.append(sb)
                free = [sb for sb in pool.instances if sb.active < spec.limits.concurrency]
                if free:
                    sandbox = min(free, key=lambda sb: sb.active)
                    sandbox.active += 1
                    timings["queue"] = _ms(time.monotonic() - t0)
                    self._stop_later(dead)
                    return pool, sandbox
                # Concurrent first calls share one start: nobody starts while a start is under way.
                if pool.starting == 0 and len(pool.instances) < spec.limits.max_instances:
                    pool.starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stop_later(dead)
                    raise QueueTimeout()
                self._cond.wait(min(remaining, 1.0))
        self._stop_later(dead)
        timings["queue"] = _ms(time.monotonic() - t0)
        sandbox = self._start_bound(pool, spec, deadline, timings)
        with self._cond:
            sandbox.active = 1
            pool.instances.append(sandbox)
        return pool, sandbox

    def _start_bound(self, pool: FunctionPool, spec: FunctionSpec, deadline: float,
                     timings: dict[str, float]) -> Sandbox:
        """Take (or start) a generic sandbox and bind it to `spec`; the caller counted it in pool.starting."""
        sandbox = None
        try:
            t1 = time.monotonic()
            if spec.runtime == "go":  # compiled once per version (cached): the platform's time, like a start
                golang.function_binary(spec)
            sandbox = self._take_generic(Profile(spec.runtime, spec.limits.memory, spec.limits.cpu,
                                                 spec.limits.network), deadline)
            started = time.monotonic() - t1
            timings["acquire"] = _ms(started)
            deadline += started  # starting a sandbox is the platform's time, not the function's
            t2 = time.monotonic()
            try:
                sandbox.init(spec, max(0.001, deadline - time.monotonic()))
            finally:
                timings["init"] = _ms(time.monotonic() - t2)
        except LoadError as exc:
            with self._cond:
                pool.load_error = exc
            if sandbox is not None:  # none yet when a Go function does not compile
                self._discard(sandbox)
            raise
        except BaseException:
            if sandbox is not None:
                self._discard(sandbox)
            raise
        finally:
            with self._cond:
                pool.starting -= 1
                self._cond.notify_all()
        return sandbox

    def _take_generic(self, profile: Profile, deadline: float) -> Sandbox:
        with self._cond:
            ready = self._generic.get(profile, [])
            sandbox = None
            while ready:
                candidate = ready.pop()
                if candidate.alive():
                    sandbox = candidate
                    break
                self._all.discard(candidate)
                self._stop_later([candidate])
        if sandbox is not None:
            return sandbox
        with self._cond:  # a warm start under way is nearly done: share it rather than start another
            while self._refilling.get(profile, 0) and not self._generic.get(profile) and not self._closed:
                if not self._cond.wait(min(max(deadline - time.monotonic(), 0.01), 1.0)):
                    break
            ready = self._generic.get(profile, [])
            while ready:
                candidate = ready.pop()
                if candidate.alive():
                    return candidate
                self._all.discard(candidate)
                self._stop_later([candidate])
        return self._start(profile, deadline)

    def _start(self, profile: Profile, deadline: float | None) -> Sandbox:
        sandbox = self._reserve(profile, deadline)
        try:
            sandbox.start()
        except BaseException:
            self._discard(sandbox)
            raise
        with self._cond:
            closed = self._closed
        if closed:  # shutdown ran while it started: it stopped a sandbox with no process yet
            sandbox.stop()
            raise RuntimeGone("the server is shutting down")
        return sandbox

    def _reserve(self, profile: Profile, deadline: float | None) -> Sandbox:
        """A new (not yet started) sandbox counted in the budget, evicting idle LRU ones to make room."""
        while True:
            victim = None
            with self._cond:
                if self._closed:
                    raise RuntimeGone("the server is shutting down")
                used = sum(sb.profile.memory for sb in self._all)
                if used + profile.memory <= self.settings.memory_budget or not self._all:
                    sandbox = self.tier.create(profile)
                    self._all.add(sandbox)
                    return sandbox
                victim = self._lru_idle()
                if victim is None:
                    if deadline is None:
                        raise RuntimeGone("the memory budget is used by busy sandboxes")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise QueueTimeout()
                    self._cond.wait(min(remaining, 0.5))
                    continue
            log.info("sandbox %s evicted (memory budget %d MB)", victim.id, self.settings.memory_budget)
            victim.stop()

    def _lru_idle(self) -> Sandbox | None:
        """Remove and return the least recently used idle sandbox (generic first), under the lock."""
        for ready in self._generic.values():
            if ready:
                sb = ready.pop(0)
                self._all.discard(sb)
                return sb
        idle = [(sb.last_used, sb, pool) for pool in [*self._pools.values(), *self._retired]
                for sb in pool.instances if sb.active == 0]
        if not idle:
            return None
        _, sb, pool = min(idle, key=lambda item: item[0])
        pool.instances.remove(sb)
        self._all.discard(sb)
        return sb

    # -- running ---------------------------------------------------------------------------------
    def _run(self, spec: FunctionSpec, call: Call, pool: FunctionPool, sandbox: Sandbox, began: float,
             deadline: float, timings: dict[str, float]) -> CallResult:
        """One call on an acquired sandbox; whatever happens, its slot is given back (or the sandbox discarded)."""
        invocation = uuid.uuid4().hex
        raw: RawResponse | None = None
        fault: Fault | None = None
        discard = True  # until the call came back in a known state
        settled = unsent = False
        try:
            headers = request_headers(call, invocation, deadline)
            sandbox.stdout.begin(invocation)
            sandbox.stderr.begin(invocation)
            t0 = time.monotonic()
            try:
                raw = sandbox.invoke(call.method, call.target, headers, call.body, deadline - time.monotonic(),
                                     self.settings.max_response_bytes)
                discard = bool(raw.header("x-alyx-retire"))
                if not 200 <= raw.status <= 599:
                    fault = bad_response_fault(spec.name, f"HTTP status {raw.status} (expected 200-599)")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a fault result
                fault, discard = invoke_fault(spec, exc, lambda: sandbox.exit_info(wait=2.0))
                if unsent := fault.code == "internal_error":
                    log.exception("function %s: the call failed before the runtime answered", spec.name)
            timings["handler"] = _ms(time.monotonic() - t0)
            if discard:
                self._discard(sandbox, pool)
            wait = 0.0 if unsent else OUTPUT_WAIT  # a call that never reached the runtime writes no end mark
            stdout, stderr = sandbox.stdout.finish(invocation, wait), sandbox.stderr.finish(invocation, wait)
            if not discard:
                self._release(pool, sandbox)
            settled = True
        finally:
            if not settled:  # an exception escaped (ours, or the greenlet was killed): never leak the slot
                self._discard(sandbox, pool)
        duration = _ms(time.monotonic() - began)
        if fault is not None:
            return fault.result(stdout, stderr, timings, duration, sandbox.id, spec.version)
        assert raw is not None
        return result_of(raw, stdout, stderr, timings, duration, sandbox.id, spec.version)

    def _release(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        stop = False
        with self._cond:
            sandbox.active -= 1
            sandbox.last_used = time.monotonic()
            if sandbox.active == 0 and (pool.retired or not sandbox.alive()):
                if sandbox in pool.instances:
                    pool.instances.remove(sandbox)
                self._all.discard(sandbox)
                stop = True
            self._cond.notify_all()
        if stop:
            sandbox.stop()

    def _discard(self, sandbox: Sandbox, pool: FunctionPool | None = None) -> None:
        """Never reuse this sandbox: forget it and stop it now."""
        with self._cond:
            if pool is not None and sandbox in pool.instances:
                pool.instances.remove(sandbox)
            self._all.discard(sandbox)
            self._cond.notify_all()
        sandbox.stop()

    @staticmethod
    def _stop_later(sandboxes: list[Sandbox]) -> None:
        for sb in sandboxes:
            spawn(sb.stop, name=f"alyx-sandbox-{sb.id}-stop")
        sandboxes.clear()

    # -- background ------------------------------------------------------------------------------
    def _refill_default(self, runtime: str) -> None:
        """Top the runtime's generic pool up, in the background (after a call, not beside its bind)."""
        if runtime in self._runtimes:
            self._refill_async(Profile(runtime, DEFAULT_PROFILE_MEMORY))

    def _refill_async(self, profile: Profile) -> None:
        with self._cond:
            have = len(self._generic.get(profile, [])) + self._refilling.get(profile, 0)
            missing = self.settings.warm_per_runtime - have
            if self._closed or missing <= 0:
                return
            self._refilling[profile] = self._refilling.get(profile, 0) + missing
        for _ in range(missing):
            spawn(self._refill_one, profile, name=f"alyx-sandbox-warm-{profile.runtime}")

    def _refill_one(self, profile: Profile) -> None:
        sandbox = None
        try:
            sandbox = self._start(profile, None)
        except Exception as exc:  # noqa: BLE001 - a failed warm start is retried by the next refill
            if not self._closed:
                log.warning("warm %s sandbox failed to start: %s", profile.runtime, exc)
        with self._cond:
            self._refilling[profile] -= 1
            if sandbox is not None:
                if self._closed:
                    self._all.discard(sandbox)
                else:
                    self._generic.setdefault(profile, []).append(sandbox)
                    self._cond.notify_all()
                    return
        if sandbox is not None:
            sandbox.stop()

    def _warm_function(self, spec: FunctionSpec) -> None:
        """Start bound sandboxes for a function until it has min_warm (in the background)."""
        try:
            while True:
                with self._cond:
                    pool = self._pools.get(spec.name)
                    if (self._closed or pool is None or pool.spec.version != spec.version or pool.load_error or
                            len(pool.instances) + pool.starting >= min(spec.limits.min_warm,
                                                                       spec.limits.max_instances)):
                        return
                    pool.starting += 1
                sandbox = self._start_bound(pool, spec, time.monotonic() + max(spec.limits.timeout, 30.0), {})
                with self._cond:
                    sandbox.last_used = time.monotonic()
                    if pool.retired or self._closed:
                        self._all.discard(sandbox)
                        retired = True
                    else:
                        pool.instances.append(sandbox)
                        self._cond.notify_all()
                        retired = False
                if retired:
                    sandbox.stop()
                    return
        except Exception as exc:  # noqa: BLE001 - warming is best effort; calls report real errors
            log.debug("min_warm for %s failed: %s", spec.name, exc)
        finally:
            with self._cond:
                self._warming.discard(spec.key)
            self._refill_default(spec.runtime)  # its starts may have taken warm sandboxes

    def _reap_step(self) -> float:
        """One round of the reaper loop (a failure is logged and retried after the same interval)."""
        if self._reaper_due:
            self.reap()
        self._reaper_due = True
        return self.settings.reap_interval

    def reap(self) -> None:
        """Evict idle-expired and dead sandboxes, drop drained old versions, keep min_warm and warm pools."""
        now = time.monotonic()
        victims: list[Sandbox] = []
        warm: list[FunctionSpec] = []
        with self._cond:
            if self._closed:
                return
            for pool in [*self._pools.values(), *self._retired]:
                victims += pool.take_expired(now, self.settings.idle_ttl)
                if (not pool.retired and not pool.load_error and pool.spec.key not in self._warming and
                        len(pool.instances) + pool.starting < pool.spec.limits.min_warm):
                    self._warming.add(pool.spec.key)
                    warm.append(pool.spec)
            self._retired = [p for p in self._retired if p.instances]
            for ready in self._generic.values():
                for sb in [sb for sb in ready if not sb.alive()]:
                    ready.remove(sb)
                    victims.append(sb)
            for sb in victims:
                self._all.discard(sb)
            runtimes = set(self._runtimes)
            self._cond.notify_all()
        for sb in victims:
            sb.stop()
        for spec in warm:
            spawn(self._warm_function, spec, name=f"alyx-sandbox-warm-{spec.name}")
        for runtime in runtimes:
            self._refill_async(Profile(runtime, DEFAULT_PROFILE_MEMORY))
        self.tier.replenish()
