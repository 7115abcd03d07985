"""Cold and warm starts of functions per sandbox tier and runtime, through the sandbox manager and HTTP.

    python bench/bench_functions.py [--tiers process bwrap docker] [--runtimes python node go]
                                    [--rounds 5] [--calls 300] [--phases] [--no-http]

For every tier x runtime, one table (medians over --rounds calls, each to a function nothing is
bound to yet, in a manager that runs on like a server's):

- cold: nothing free (functions.warm_pool: 0): start a sandbox, bind it to the function (/init),
  call it. On Docker that starts a container the tier created ahead (created, not started: no
  process, no memory), as a running server has one; a container's create is in --phases.
- warm pool: a generic sandbox was started ahead (functions.warm_pool: 1): bind it and call it.
  Both are given as "to the handler's first line / until the answer is back": the handler returns
  the wall-clock time of its first line, so the first figure is what a caller waits before any of
  their code runs.
- warm: later calls on the bound sandbox through the manager (median / p95);
- HTTP: warm calls of `GET /api/functions/<name>` on a live `gunicorn -k gevent -w 1` server
  (median / p95, keep-alive client on the same machine): routing, auth, rules, the execution log.
  The handlers do nothing, so these are the overhead above a handler.

--phases adds where a cold start goes, in ms, from the marks each sandbox keeps (Sandbox.phases):
the server's calls (prepare: folders and secret; spawn: fork/exec, or Docker's start_api / attach),
the runtime's own marks (exec: until its process runs, for Node and Go; boot: until the shim's first
line, interpreter included; imports; listen: socket set-up; ready: from listening until the server
had the health answer) and the bind (copy: code into the sandbox; load: the runtime loading the
module; esm: Node's import hook; init: the whole /init round trip), then the first call (call).
A second table is where a bind from the warm pool goes, from the marks of the runtime's /__rt/init
answer: acquire (the manager's, before the bind), copy, send (until the runtime had the request), Go's
handover (the loader's work until its exec) and runtime (the function binary's Go runtime start and
package init), import (the module's), load, answer (from bound until the server had it), output (the
wait for init's end marks), init, call.

Go's one-time compile (and its loader's) is done before any clock starts: it happens once per code
version, not per start. Prints the load average: figures from a busy machine are upper bounds.
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HOST, Server, load_average, percentile  # noqa: E402

from alyx.sandbox import (  # noqa: E402
    Call,
    FunctionRegistry,
    FunctionSpec,
    PoolSettings,
    Profile,
    SandboxManager,
    choose_tier,
    golang,
)

# Each handler answers with the wall-clock time (epoch seconds) of its first line.
CODE = {
    "python": ("py.py", "import time\n\ndef handler(req, res):\n    t = time.time()\n    return res.json({'t': t})\n"),
    "node": ("js.js", "export default async function handler(req, res) {\n"
                      "  const t = (performance.timeOrigin + performance.now()) / 1000;\n"
                      "  return res.json({ t });\n}\n"),
    "go": ("go.go", 'package main\n\nimport (\n\t"net/http"\n\t"time"\n\n\t"github.com/watzon/alyx/pkg/runtime"\n)\n\n'
                    'func Handle(w http.ResponseWriter, r *http.Request) {\n'
                    '\tt := float64(time.Now().UnixNano()) / 1e9\n'
                    '\truntime.JSON(w, 200, map[string]float64{"t": t})\n}\n'),
}
PHASES = ("prepare", "create", "spawn", "start_api", "attach", "exec", "boot", "imports", "listen", "ready", "start",
          "copy", "load", "esm", "init", "call")
# Where a bind from the warm pool goes (--phases; docs/functions.md, "Where a start goes"): acquire (the
# manager's, until the bind begins), copy, then init's parts (send, Go's handover and runtime, Node's
# import, answer, output), init itself, then the first call.
BIND_PHASES = ("acquire", "copy", "send", "handover", "runtime", "import", "load", "answer", "output", "init",
               "call")


def write_functions(folder: Path, runtimes: list[str], copies: int = 1) -> dict[str, list[str]]:
    """``copies`` functions per runtime in ``folder`` (so each round meets one nothing is bound to yet);
    runtime → their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for runtime in runtimes:
        filename, text = CODE[runtime]
        stem, ext = filename.split(".")
        for n in range(copies):
            name = stem if copies == 1 else f"{stem}{n}"
            (folder / f"{name}.{ext}").write_text(text)
            names.setdefault(runtime, []).append(name)
    return names


def first_call(manager: SandboxManager, spec: FunctionSpec) -> tuple[float, float, dict[str, float]]:
    """(ms to the handler's first line, ms until the answer, the serving sandbox's phases)."""
    call = Call("GET", f"/api/functions/{spec.name}")
    began_wall, began = time.time(), time.perf_counter()
    result = manager.invoke(spec, call)
    done = (time.perf_counter() - began) * 1000
    assert result.status == 200, (result.status, result.error, result.stderr)
    first_line = (json.loads(result.body)["t"] - began_wall) * 1000
    phases: dict[str, float] = {}
    for sandbox in manager.sandboxes():
        if sandbox.id == result.sandbox:
            phases = dict(sandbox.phases)
    phases["call"] = result.timings.get("handler", 0.0)
    phases["acquire"] = result.timings.get("acquire", 0.0)
    return first_line, done, phases


def settle(manager: SandboxManager, runtime: str, pooled: bool) -> None:
    """Wait until what a long-running server has ready is ready again: the warm sandbox (pooled), the
    container created ahead (Docker), then a moment for the starts' own after-work (pumps, logs)."""
    profile = Profile(runtime)
    stocked = getattr(manager.tier, "stocked", None)
    deadline = time.monotonic() + 60
    while ((pooled and not manager.stats()["generic"].get(f"{runtime}/{profile.memory}M"))
           or (stocked is not None and not stocked(profile))):
        if time.monotonic() > deadline:
            raise SystemExit(f"{manager.tier.name} {runtime}: nothing warm after 60 s")
        time.sleep(0.01)
    time.sleep(0.3)


def measure(tier: str, runtime: str, registry: FunctionRegistry, names: list[str], rounds: int,
            calls: int) -> dict:
    specs = [registry.get(name) for name in names]
    if runtime == "go":  # the one-time compile (and the loader's) is not a start: done before any clock
        golang.loader_binary()
        for spec in specs:
            golang.function_binary(spec)
    cold, pooled, phases, binds, samples = [], [], [], [], []
    # One long-running manager per kind, as in a server; each round calls a function nothing is bound to.
    manager = SandboxManager(choose_tier(tier), PoolSettings(warm_per_runtime=0, reap_interval=0.3))
    try:
        manager.invoke(specs[-1], Call("GET", "/"))  # the runtime's first start on this tier is not measured
        for spec in specs[:rounds]:
            settle(manager, runtime, pooled=False)
            first_line, done, marks = first_call(manager, spec)
            cold.append((first_line, done))
            phases.append(marks)
    finally:
        manager.shutdown()
    manager = SandboxManager(choose_tier(tier), PoolSettings(warm_per_runtime=1, reap_interval=0.3))
    try:
        manager.prewarm([runtime])
        for spec in specs[rounds:]:
            settle(manager, runtime, pooled=True)
            first_line, done, marks = first_call(manager, spec)
            pooled.append((first_line, done))
            binds.append(marks)
        call = Call("GET", f"/api/functions/{specs[-1].name}")
        for _ in range(calls):
            t = time.perf_counter()
            manager.invoke(specs[-1], call)
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        manager.shutdown()
    return {"cold": [statistics.median(x) for x in zip(*cold, strict=True)],
            "pooled": [statistics.median(x) for x in zip(*pooled, strict=True)],
            "warm": (statistics.median(samples), percentile(samples, 95)),
            "phases": {p: statistics.median(m.get(p, 0.0) for m in phases) for p in PHASES
                       if any(p in m for m in phases)},
            "binds": {p: statistics.median(m.get(p, 0.0) for m in binds) for p in BIND_PHASES
                      if any(p in m for m in binds)}}


def over_http(tier: str, runtimes: list[str], calls: int) -> dict[str, tuple[float, float]]:
    """Warm GET /api/functions/<name> latency (median, p95 ms) per runtime on a live gunicorn server."""
    server = Server("bench-functions")
    try:
        env = server.alyx_project("collections: []\n")
        names = write_functions(Path(env["ALYX_PROJECT_DIR"]) / "functions", runtimes)
        env.update({"ALYX_FUNCTIONS_SANDBOX": tier, "ALYX_EVENTS_RUNNER": "off"})
        server.start_gunicorn(env, workers=1)
        conn = http.client.HTTPConnection(HOST, server.port, timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        figures = {}
        for runtime, (name,) in names.items():
            samples = []
            for n in range(calls + 20):  # the first calls start, bind and warm up the sandbox
                t = time.perf_counter()
                conn.request("GET", f"/api/functions/{name}")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise SystemExit(f"{tier} {runtime} over HTTP: {response.status} {body[:300]!r}")
                if n >= 20:
                    samples.append((time.perf_counter() - t) * 1000)
            figures[runtime] = (statistics.median(samples), percentile(samples, 95))
        conn.close()
        return figures
    finally:
        server.stop()


def pair(figures: tuple[float, float] | list[float] | None, digits: int) -> str:
    return f"{figures[0]:.{digits}f} / {figures[1]:.{digits}f}" if figures else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiers", nargs="*", default=["process", "bwrap", "docker"])
    parser.add_argument("--runtimes", nargs="*", default=["python", "node", "go"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--phases", action="store_true", help="also print where the time of a cold start goes")
    parser.add_argument("--no-http", action="store_true", help="skip the live gunicorn server")
    args = parser.parse_args()
    import logging
    import tempfile

    logging.getLogger("alyx.sandbox").setLevel(logging.ERROR)  # the process tier's warning, once per manager
    folder = Path(tempfile.mkdtemp(prefix="bench-functions-")) / "functions"
    names = write_functions(folder, args.runtimes, copies=2 * args.rounds)
    registry = FunctionRegistry(folder, {})
    print(f"load average before: {load_average()}", flush=True)
    rows = []
    for tier in args.tiers:
        http_figures = {} if args.no_http else over_http(tier, args.runtimes, args.calls)
        for runtime in args.runtimes:
            figures = measure(tier, runtime, registry, names[runtime], args.rounds, args.calls)
            figures["http"] = http_figures.get(runtime)
            rows.append((tier, runtime, figures))
            print(f"  {tier} {runtime}: done (load {load_average()})", file=sys.stderr, flush=True)
    print(f"load average after: {load_average()}; {args.rounds} rounds, {args.calls} warm calls; ms")
    print(f"{'tier':8} {'runtime':7} {'cold: first line / done':>24} {'warm pool: first line / done':>29} "
          f"{'warm p50 / p95':>15} {'HTTP p50 / p95':>15}")
    for tier, runtime, f in rows:
        print(f"{tier:8} {runtime:7} {pair(f['cold'], 1):>24} {pair(f['pooled'], 1):>29} {pair(f['warm'], 2):>15} "
              f"{pair(f['http'], 2):>15}")
    if args.phases:
        print_phases(rows, "phases", PHASES, 1,
                     "where a cold start goes (median ms per phase; start = prepare..ready as the server saw it)")
        print_phases(rows, "binds", BIND_PHASES, 2,
                     "where a bind from the warm pool goes (median ms per phase; init = send..output)")


def print_phases(rows: list[tuple[str, str, dict]], key: str, names: tuple[str, ...], digits: int, title: str) -> None:
    """One table of median phase times per tier x runtime: the phases any row has, '-' where it has none."""
    shown = [p for p in names if any(p in f[key] for _, _, f in rows)]
    print("\n" + title)
    print(f"{'tier':8} {'runtime':7} " + " ".join(f"{p:>8}" for p in shown))
    for tier, runtime, f in rows:
        print(f"{tier:8} {runtime:7} " + " ".join(
            f"{f[key][p]:8.{digits}f}" if p in f[key] else f"{'-':>8}" for p in shown))


if __name__ == "__main__":
    main()
