#!/usr/bin/env python3
"""One 100-operation POST /api/batch against 100 separate creates, over HTTP, in the same run.

    .venv/bin/python bench/batch.py [--ops 100] [--rounds 5] [--database sqlite|postgres]

Alyx runs as in production (`gunicorn -c gunicorn.conf.py -w 2 wsgi:app`, gevent workers) on a
temporary project with bench/crud.py's public collection (title, body, status, views). One client on one keep-alive
connection alternates, for --rounds rounds: --ops sequential POST /api/collections/items, then one
POST /api/batch holding --ops creates. Both write the same records (validation, rule, change-feed
row each); the batch pays one request and one transaction instead of --ops of each. Prints each
round and the median ratio (separate / batch): the issue's target is at least 5x. A warm-up round
of each runs first. `--database postgres` uses ALYX_BENCH_PG (default a database created on
127.0.0.1:5432). Not part of the test suite.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
import uuid

from common import Server, connect, load_average
from crud import ALYX_SCHEMA as SCHEMA  # the same items collection as the CRUD benchmark


class Client:
    """One keep-alive connection to the server under test."""

    def __init__(self, port: int) -> None:
        self.conn = connect(port, timeout=120)

    def post(self, path: str, body: object, expect: int) -> bytes:
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != expect:
            raise RuntimeError(f"POST {path}: {resp.status} {data[:300]!r}")
        return data


def record(i: int) -> dict[str, object]:
    return {"title": f"item {i}", "body": "some text " * 5, "views": i}


def separate(client: Client, ops: int) -> float:
    start = time.perf_counter()
    for i in range(ops):
        client.post("/api/collections/items", record(i), 201)
    return time.perf_counter() - start


def batched(client: Client, ops: int) -> float:
    payload = {"requests": [{"method": "POST", "url": "/api/collections/items", "body": record(i)}
                            for i in range(ops)]}
    start = time.perf_counter()
    results = json.loads(client.post("/api/batch", payload, 200))
    elapsed = time.perf_counter() - start
    if len(results) != ops or any(r["status"] != 201 for r in results):
        raise RuntimeError("the batch did not create every record")
    return elapsed


def postgres_url() -> tuple[str, object]:
    """A fresh PostgreSQL database for the run, and how to drop it."""
    import os

    import psycopg2

    admin = os.environ.get("ALYX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"alyx_bench_batch_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    return admin.rsplit("/", 1)[0] + "/" + name, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    server = Server("bench-batch")
    server.name = "alyx"
    drop = None
    try:
        env = {**server.alyx_project(SCHEMA), "ALYX_API_MAX_BATCH": str(max(args.ops, 100)),
               "ALYX_SERVER_MAX_BODY_BYTES": str(16 << 20)}
        if args.database == "postgres":
            env["ALYX_DATABASE_URL"], drop = postgres_url()
        server.start_gunicorn(env, workers=2)
        client = Client(server.port)
        load_before = load_average()
        separate(client, args.ops), batched(client, args.ops)  # warm-up: every code path loaded
        rows = []
        for n in range(args.rounds):
            one_by_one = separate(client, args.ops)
            in_batch = batched(client, args.ops)
            rows.append((one_by_one, in_batch))
            print(f"round {n + 1}: {args.ops} creates {one_by_one * 1000:8.1f} ms   one batch {in_batch * 1000:7.1f} ms"
                  f"   ratio {one_by_one / in_batch:5.1f}x", flush=True)
        ratios = [a / b for a, b in rows]
        print()
        print(f"Alyx batch vs separate creates ({args.database}, gunicorn -w 2, one keep-alive client), "
              f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, Python "
              f"{platform.python_version()}")
        print(f"load average before {load_before}, after {load_average()}")
        print()
        print(f"| {args.ops} operations | median | best | worst |")
        print("|---|---:|---:|---:|")
        sep = [a * 1000 for a, _ in rows]
        bat = [b * 1000 for _, b in rows]
        print(f"| separate creates (ms) | {statistics.median(sep):.1f} | {min(sep):.1f} | {max(sep):.1f} |")
        print(f"| one batch (ms) | {statistics.median(bat):.1f} | {min(bat):.1f} | {max(bat):.1f} |")
        print(f"| ratio | **{statistics.median(ratios):.1f}x** | {max(ratios):.1f}x | {min(ratios):.1f}x |")
        target = statistics.median(ratios) >= 5
        print(f"\ntarget (batch at least 5x faster): {'met' if target else 'NOT met'}")
        return 0
    finally:
        server.stop()
        if drop is not None:
            drop()  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
