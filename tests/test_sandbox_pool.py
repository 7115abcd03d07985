"""The sandbox manager on its own (no Flask, no database): pools, eviction, versions, warm starts.

Runs on the process tier: what is tested here is the pool logic, which is the same for every tier."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.sandbox import Call, FunctionRegistry, PoolSettings, SandboxManager
from alyx.sandbox.tiers import ProcessTier

SLEEPY = ("import time\ndef handler(req, res):\n    time.sleep(float(req.query.get('s', '0')))\n"
          "    return res.text('ok')\n")


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    folder = tmp_path / "functions"
    folder.mkdir()
    return folder


@pytest.fixture
def managers() -> Iterator[list[SandboxManager]]:
    made: list[SandboxManager] = []
    yield made
    for manager in made:
        manager.shutdown()


def manager(managers: list[SandboxManager], **settings) -> SandboxManager:
    m = SandboxManager(ProcessTier(), PoolSettings(**{"warm_per_runtime": 0, "reap_interval": 3600, **settings}))
    managers.append(m)
    return m


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def call(m: SandboxManager, registry: FunctionRegistry, name: str, query: str = ""):
    return m.invoke(registry.get(name), Call("GET", f"/api/functions/{name}{query}"))


def test_idle_sandboxes_leave_after_the_ttl_except_min_warm(functions: Path, managers) -> None:
    (functions / "plain.py").write_text(SLEEPY)
    (functions / "kept").mkdir()
    (functions / "kept" / "manifest.yaml").write_text("min_warm: 1\n")
    (functions / "kept" / "index.py").write_text(SLEEPY)
    registry = FunctionRegistry(functions, {})
    m = manager(managers, idle_ttl=60)
    assert call(m, registry, "plain").status == 200 and call(m, registry, "kept").status == 200
    for sb in m.sandboxes():
        sb.last_used -= 120  # idle for longer than the TTL
    m.reap()
    functions_left = m.stats()["functions"]
    assert functions_left["plain"]["instances"] == [] and len(functions_left["kept"]["instances"]) == 1


def test_min_warm_starts_bound_sandboxes_before_any_call(functions: Path, managers) -> None:
    (functions / "kept").mkdir()
    (functions / "kept" / "manifest.yaml").write_text("min_warm: 2\nconcurrency: 1\n")
    (functions / "kept" / "index.py").write_text(SLEEPY)
    registry = FunctionRegistry(functions, {})
    m = manager(managers)
    m.keep_warm(registry.get("kept"))
    wait_for(lambda: len(m.stats()["functions"]["kept"]["instances"]) == 2, "two warm sandboxes")
    result = call(m, registry, "kept")
    assert result.status == 200 and result.timings["init"] == 0  # served warm, no load on the call


def test_memory_budget_evicts_the_least_recently_used_idle_sandbox(functions: Path, managers) -> None:
    for name in ("a", "b", "c"):
        (functions / f"{name}.py").write_text(SLEEPY)
    registry = FunctionRegistry(functions, {})
    m = manager(managers, memory_budget=256)  # two 128 MB sandboxes
    assert call(m, registry, "a").status == 200
    assert call(m, registry, "b").status == 200
    assert call(m, registry, "a").status == 200  # b is now the least recently used
    assert call(m, registry, "c").status == 200
    live = {name: len(pool["instances"]) for name, pool in m.stats()["functions"].items()}
    assert live == {"a": 1, "b": 0, "c": 1}
    assert m.stats()["memory_used_mb"] <= 256


def test_a_busy_sandbox_is_never_evicted(functions: Path, managers) -> None:
    (functions / "busy.py").write_text(SLEEPY)
    (functions / "other").mkdir()
    (functions / "other" / "manifest.yaml").write_text("timeout: 0.5\n")
    (functions / "other" / "index.py").write_text(SLEEPY)
    registry = FunctionRegistry(functions, {})
    m = manager(managers, memory_budget=128)
    results = []
    worker = threading.Thread(target=lambda: results.append(call(m, registry, "busy", "?s=3")))
    worker.start()
    wait_for(lambda: any(i["active"] for p in m.stats()["functions"].values() for i in p["instances"]),
             "the busy call to start")
    other = call(m, registry, "other")
    assert other.status == 504 and other.error["code"] == "function_timeout"
    worker.join()
    assert results[0].status == 200 and results[0].body == b"ok"


def test_a_new_version_retires_the_old_sandboxes(functions: Path, managers) -> None:
    path = functions / "v.py"
    path.write_text("def handler(req, res):\n    return res.text('one')\n")
    registry = FunctionRegistry(functions, {})
    m = manager(managers)
    first = call(m, registry, "v")
    old = m.sandboxes()
    path.write_text("def handler(req, res):\n    return res.text('two')\n")
    second = call(m, registry, "v")
    assert (first.body, second.body) == (b"one", b"two") and first.sandbox != second.sandbox
    m.reap()
    assert all(not sb.alive() for sb in old)


def test_a_runtime_that_died_while_idle_is_replaced(functions: Path, managers) -> None:
    (functions / "f.py").write_text("import os\ndef handler(req, res):\n    return res.json(os.getpid())\n")
    registry = FunctionRegistry(functions, {})
    m = manager(managers)
    first = call(m, registry, "f")
    os.kill(int(first.body), signal.SIGKILL)
    wait_for(lambda: not m.sandboxes()[0].alive(), "the runtime to die")
    second = call(m, registry, "f")
    assert second.status == 200 and second.body != first.body


def test_concurrent_first_calls_share_one_start(functions: Path, managers) -> None:
    (functions / "many").mkdir()
    (functions / "many" / "manifest.yaml").write_text("concurrency: 8\nmax_instances: 4\n")
    (functions / "many" / "index.py").write_text(SLEEPY)
    registry = FunctionRegistry(functions, {})
    m = manager(managers)
    results = []
    threads = [threading.Thread(target=lambda: results.append(call(m, registry, "many", "?s=0.2")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [200] * 6
    assert len({r.sandbox for r in results}) == 1
    assert sum(1 for r in results if r.timings["init"] > 0) == 1
