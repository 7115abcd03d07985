"""Cold start and warm call latency of functions per sandbox tier, measured through the sandbox manager.

    python bench/bench_functions.py [process bwrap docker] [--calls 200]

Cold: a call to a function whose sandbox must be started (no warm pool) and bound. Warm pool: the
first call when a generic sandbox was pre-started (bind + call). Warm: later calls (median, p95).
Go's one-time compile (and its loader's) is done before the clock starts.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alyx.sandbox import Call, FunctionRegistry, PoolSettings, SandboxManager, choose_tier, golang  # noqa: E402

CODE = {
    "hello.py": "def handler(req, res):\n    return res.json({'hello': 'world'})\n",
    "hellojs.js": "export default async function handler(req, res) { return res.json({ hello: 'world' }); }\n",
    "hellogo.go": 'package main\nimport ("net/http"; "github.com/watzon/alyx/pkg/runtime")\n'
                  'func Handle(w http.ResponseWriter, r *http.Request) {\n'
                  '\truntime.JSON(w, 200, map[string]string{"hello": "world"})\n}\n',
}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tiers", nargs="*", default=["process", "bwrap", "docker"])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "functions"
    folder.mkdir()
    for name, text in CODE.items():
        (folder / name).write_text(text)
    registry = FunctionRegistry(folder, {})
    for tier_name in args.tiers:
        for name in ("hello", "hellojs", "hellogo"):
            spec = registry.get(name)
            if spec.runtime == "go":  # its one-time compile (and the loader's) is not a start: done before
                golang.function_binary(spec)
                golang.loader_binary()
            call = Call("GET", f"/api/functions/{name}")
            cold = SandboxManager(choose_tier(tier_name), PoolSettings(warm_per_runtime=0))
            try:
                t = time.perf_counter()
                assert cold.invoke(spec, call).status == 200
                cold_s = time.perf_counter() - t
            finally:
                cold.shutdown()
            warm = SandboxManager(choose_tier(tier_name), PoolSettings(warm_per_runtime=1))
            try:
                warm.prewarm([spec.runtime])
                deadline = time.monotonic() + 30
                while not warm.stats()["generic"] and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
                t = time.perf_counter()
                first = warm.invoke(spec, call)
                pooled_s = time.perf_counter() - t
                assert first.status == 200, first.error
                samples = []
                for _ in range(args.calls):
                    t = time.perf_counter()
                    warm.invoke(spec, call)
                    samples.append(time.perf_counter() - t)
            finally:
                warm.shutdown()
            samples.sort()
            print(f"{tier_name:8} {spec.runtime:7} cold {ms(cold_s):>10}  from warm pool {ms(pooled_s):>9}  "
                  f"warm median {ms(statistics.median(samples)):>8}  p95 {ms(samples[int(len(samples) * .95)]):>8}",
                  flush=True)


if __name__ == "__main__":
    main()
