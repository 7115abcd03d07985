#!/usr/bin/env python3
"""What an async database hook costs the write path, and how soon the hook starts after the commit.

    /work/venv/bin/python bench/events.py                # defaults below, prints a table
    /work/venv/bin/python bench/events.py --writes 1000 --rounds 3 --hooks 200

1. Write path, in process: ``Records.create`` on SQLite, one project with no hook and one with one
   async hook on the collection (its job row is inserted in the write's transaction: the outbox).
   Runners are off (events.runner: off) so only the write path is measured, not the function.
   Batches alternate between the two apps; medians of creates/s and of CPU time per create.
2. Write path over HTTP: sequential POSTs to ``gunicorn -w 1 -k gevent`` (runners off), same two
   projects, alternating rounds; medians of creates/s and of the worker's CPU time per create
   (from /proc: steadier than the wall clock when other work shares the cores).
3. Delivery latency: gunicorn -w 2 with runners on, the process sandbox tier, one POST every 20 ms;
   the hook prints ``time.time()`` as its first statement; latency = that minus the record's
   ``created_at`` (set just before the insert, in the same request) — commit to function start,
   including the claim, the sandbox call and the runtime's request parsing. p50/p99.

Everything talks to 127.0.0.1 only; temporary projects are deleted afterwards.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import LiveServer, percentile  # noqa: E402

SCHEMA = """
collections:
  - name: orders
    fields:
      - {name: title, type: string, required: true, max: 200}
      - {name: amount, type: int, default: 0}
      - {name: status, type: select, values: [new, paid], default: new}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""
MANIFEST = """
runtime: python
hooks:
  - {type: database, source: orders, action: insert, mode: async}
"""
HOOK = '''
import time
def handler(req, res):
    started = time.time()
    print("start", repr(started), req.input["document"]["created_at"], flush=True)
    return res.json({"ok": True})
'''


def project(base: Path, name: str, with_hook: bool) -> Path:
    folder = base / name
    (folder / "functions").mkdir(parents=True)
    (folder / "schema.yaml").write_text(textwrap.dedent(SCHEMA))
    if with_hook:
        (folder / "functions" / "onorder").mkdir()
        (folder / "functions" / "onorder" / "manifest.yaml").write_text(textwrap.dedent(MANIFEST))
        (folder / "functions" / "onorder" / "index.py").write_text(textwrap.dedent(HOOK))
    return folder


def in_process(folders: dict[str, Path], writes: int, batches: int) -> dict[str, tuple[float, float]]:
    """Both apps open at once; batches alternate between them, so both see the same machine load.

    Returns, per app, the median over batches of (creates/s by the wall clock, CPU µs per create).
    CPU time of this process is the steadier measure when other work shares the cores.
    """
    from alyx.app import create_app
    from alyx.config import load_config

    apps = {}
    for kind, folder in folders.items():
        shutil.rmtree(folder / "data", ignore_errors=True)
        apps[kind] = create_app(load_config(folder, env={
            "ALYX_EVENTS_RUNNER": "off", "ALYX_SERVER_ENVIRONMENT": "development",
            "ALYX_FUNCTIONS_SANDBOX": "process"})).extensions["alyx"]
    time.sleep(2)  # let the hooked app's sandbox prewarm finish
    samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in apps}
    try:
        per_batch = max(writes // batches, 1)
        for n in range(batches + 1):
            order = list(apps) if n % 2 == 0 else list(reversed(apps))
            for kind in order:
                svc = apps[kind]
                with svc.db.connection():
                    wall, cpu = time.perf_counter(), time.process_time()
                    for i in range(per_batch):
                        svc.records.create("orders", {"title": f"order {n}-{i}", "amount": i})
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if n:  # the first batch of each is a warm-up
                    samples[kind].append((per_batch / wall, cpu / per_batch * 1e6))
    finally:
        for svc in apps.values():
            svc.close()
    return {kind: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
            for kind, v in samples.items()}


class Gunicorn(LiveServer):
    """gunicorn in its own session on the bench project (process sandboxes), stopped with its group."""

    def __init__(self, folder: Path, env: dict[str, str], workers: int = 2) -> None:
        super().__init__(folder, workers, {"ALYX_FUNCTIONS_SANDBOX": "process", **env}, secret="b" * 48,
                         append_log=True, new_session=True)

    def stop(self, timeout: float = 20.0) -> None:
        super().stop(timeout)


def post(conn: http.client.HTTPConnection, title: str) -> None:
    conn.request("POST", "/api/collections/orders", json.dumps({"title": title, "amount": 1}),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        raise RuntimeError(f"create failed: {response.status}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (from /proc), in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def http_round(folder: Path, writes: int) -> tuple[float, float]:
    """(creates/s, worker CPU µs per create) for sequential POSTs to one gevent worker."""
    shutil.rmtree(folder / "data", ignore_errors=True)
    server = Gunicorn(folder, {"ALYX_EVENTS_RUNNER": "off", "WEB_CONCURRENCY": "1"}, workers=1)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(100):
            post(conn, f"warm {i}")
        pids = server.worker_pids()
        t0, c0 = time.perf_counter(), cpu_seconds(pids)
        for i in range(writes):
            post(conn, f"order {i}")
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - c0
        return writes / wall, cpu / writes * 1e6
    finally:
        server.stop()


def latency(folder: Path, hooks: int) -> list[float]:
    shutil.rmtree(folder / "data", ignore_errors=True)
    server = Gunicorn(folder, {"ALYX_EVENTS_POLL_MS": "500"})
    db = folder / "data" / "alyx.db"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        post(conn, "warm-up (starts the sandbox)")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _runs(db):
            time.sleep(0.1)
        for i in range(hooks):
            post(conn, f"order {i}")
            time.sleep(0.02)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_runs(db)) < hooks + 1:
            time.sleep(0.2)
        samples = []
        for stdout in _runs(db)[1:]:
            _, started, created = stdout.split()
            created_at = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
            samples.append((float(started) - created_at) * 1000)
        return samples
    finally:
        server.stop()


def _runs(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            rows = conn.execute("SELECT stdout FROM _alyx_executions WHERE function_id = 'onorder' "
                                "ORDER BY started_at").fetchall()
        except sqlite3.OperationalError:
            return []
    return [r[0] for r in rows if r[0].startswith("start")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=4000, help="creates per app, in process")
    parser.add_argument("--batches", type=int, default=20, help="alternating batches the writes are cut into")
    parser.add_argument("--http-writes", type=int, default=1000, help="creates per HTTP round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hooks", type=int, default=300, help="hooked writes for the latency phase")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="alyx-bench-events-"))
    try:
        plain, hooked = project(base, "plain", False), project(base, "hooked", True)
        inproc = in_process({"none": plain, "hook": hooked}, args.writes, args.batches)
        results: dict[str, list[tuple[float, float]]] = {"http none": [], "http hook": []}
        for _ in range(args.rounds):
            results["http none"].append(http_round(plain, args.http_writes))
            results["http hook"].append(http_round(hooked, args.http_writes))
        samples = latency(hooked, args.hooks)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {dt.date.today()}")
    (none_rate, none_cpu), (hook_rate, hook_cpu) = inproc["none"], inproc["hook"]
    print(f"in process  creates/s  no hook {none_rate:7.0f}   one async hook {hook_rate:7.0f}   "
          f"cost {100 * (1 - hook_rate / none_rate):5.1f}%")
    print(f"in process  CPU µs/create  no hook {none_cpu:7.0f}   one async hook {hook_cpu:7.0f}   "
          f"cost {100 * (hook_cpu / none_cpu - 1):5.1f}%")
    for n, label in ((0, "creates/s"), (1, "worker CPU µs/create")):
        none = statistics.median(r[n] for r in results["http none"])
        hook = statistics.median(r[n] for r in results["http hook"])
        cost = 100 * (1 - hook / none) if n == 0 else 100 * (hook / none - 1)
        print(f"HTTP (1 worker)  {label}  no hook {none:7.0f}   one async hook {hook:7.0f}   cost {cost:5.1f}%")
    if samples:
        print(f"delivery commit → function start: n={len(samples)} p50 {percentile(samples, 50):.1f} ms   "
              f"p99 {percentile(samples, 99):.1f} ms   max {max(samples):.1f} ms")


if __name__ == "__main__":
    main()
