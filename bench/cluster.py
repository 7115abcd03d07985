#!/usr/bin/env python3
"""Alyx on 1, 2 and 3 hosts (network namespaces, tests/deploy_cluster.py) behind nginx: write
throughput and realtime delivery latency. Needs root (ip netns), nginx, socat, PostgreSQL, Redis.

    .venv/bin/python bench/cluster.py                       # recorded in docs/benchmarks.md
    .venv/bin/python bench/cluster.py --hosts 1,3 --writes 200

Per cluster size: each host runs gunicorn -w 2 on one PostgreSQL database (fresh) with the Redis
broker. One subscriber per host (connected to that host directly) subscribes to the collection;
--writers threads POST --writes creates in total through nginx as fast as they can. Reported:
creates/s (acknowledged), and the delivery latency of every create at every subscriber = time the
delta is parsed − time its POST was sent (client clock, one machine), p50/p99. All processes share
this machine's cores, so more hosts add processes, not CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402

from tests.conftest import write_project  # noqa: E402
from tests.deploy_cluster import Cluster  # noqa: E402
from tests.harness import percentile  # noqa: E402
from tests.test_deploy_cluster import SCHEMA, create, subscribe  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database() -> str:
    name = f"alyx_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    return name


def drop_database(name: str) -> None:
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def run(size: int, writes: int, writers: int) -> dict[str, float]:
    name = fresh_database()
    with tempfile.TemporaryDirectory(prefix="alyx-bench-cluster-") as tmp:
        folder = Path(tmp)
        project = write_project(folder / "project", SCHEMA)
        cluster = Cluster(folder, project, f"postgresql://postgres@127.0.0.1:5432/{name}",
                          "redis://127.0.0.1:6379/4", size=size)
        try:
            sockets = [subscribe(host.url)[0] for host in cluster.hosts]
            sent: dict[str, float] = {}
            titles: dict[str, float] = {}
            lock = threading.Lock()
            received: list[list[tuple[str, float]]] = [[] for _ in sockets]

            def reader(i: int) -> None:
                ws = sockets[i]
                while len(received[i]) < writes:
                    frame = json.loads(ws.recv(timeout=60))
                    now = time.perf_counter()
                    for item in frame.get("payload", {}).get("changes", {}).get("inserts", []):
                        received[i].append((item["title"], now))

            def writer(count: int, tag: int) -> None:
                for n in range(count):
                    title = f"w{tag}-{n}"
                    with lock:
                        titles[title] = time.perf_counter()
                    rid = create(cluster.url, title)
                    with lock:
                        sent[rid] = titles[title]

            readers = [threading.Thread(target=reader, args=(i,)) for i in range(len(sockets))]
            for t in readers:
                t.start()
            threads = [threading.Thread(target=writer, args=(writes // writers, k)) for k in range(writers)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            for t in readers:
                t.join(timeout=60)
            latencies = [(at - titles[title]) * 1000 for got in received for title, at in got if title in titles]
            for ws in sockets:
                ws.close()
        finally:
            cluster.close()
    drop_database(name)
    return {"hosts": size, "creates_per_s": len(sent) / elapsed, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "deliveries": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1,2,3")
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--writers", type=int, default=6)
    args = parser.parse_args()
    print(f"{'hosts':>5} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'deliveries':>10}")
    for size in (int(s) for s in args.hosts.split(",")):
        row = run(size, args.writes, args.writers)
        print(f"{row['hosts']:>5} {row['creates_per_s']:>10.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
              f"{row['deliveries']:>10}", flush=True)


if __name__ == "__main__":
    main()
