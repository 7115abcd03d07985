"""Three Alyx hosts (network namespaces, two gunicorn workers each) on one PostgreSQL and one Redis,
nginx in front (tests/deploy_cluster.py): realtime across hosts, and a host killed mid-burst."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import NOTES_SCHEMA, write_project
from tests.deploy_cluster import Cluster

REDIS = "redis://127.0.0.1:6379/3"
TIMEOUT = 20.0
SCHEMA = NOTES_SCHEMA


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    for tool in ("ip", "nginx", "socat"):
        if shutil.which(tool) is None or os.geteuid() != 0:
            if os.environ.get("CI"):
                pytest.fail(f"the cluster test needs root and {tool} (scripts/provision.sh)")
            pytest.skip(f"needs root and {tool}")
    project = write_project(tmp_path / "project", SCHEMA)
    made = Cluster(tmp_path, project, pg_url, REDIS, size=3)
    try:
        yield made
    finally:
        made.close()


def create(url: str, title: str) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/api/collections/notes", json.dumps({"title": title}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        assert resp.status in (200, 201), (resp.status, raw[:200])  # nginx's 502 page of a dying host is HTML
        return str(json.loads(raw)["id"])
    finally:
        conn.close()


def subscribe(url: str, since: int | None = None) -> tuple[ClientConnection, int]:
    ws = connect(url.replace("http", "ws", 1) + "/api/realtime", open_timeout=TIMEOUT, compression=None, legacy=True)
    assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
    payload: dict[str, Any] = {"collection": "notes", **({"since": since} if since is not None else {})}
    ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": payload}))
    snapshot = json.loads(ws.recv(timeout=TIMEOUT))
    assert snapshot["type"] == "snapshot", snapshot
    return ws, int(snapshot["payload"].get("cursor") or 0)


def creates_until(ws: ClientConnection, want: set[str], seen: list[tuple[int, str]] | None = None,
                  ) -> list[tuple[int, str]]:
    """(cursor, id) of each insert received until every id in `want` was seen."""
    seen = [] if seen is None else seen
    while not want <= {rid for _, rid in seen}:
        try:
            frame = json.loads(ws.recv(timeout=TIMEOUT))
        except TimeoutError:
            raise AssertionError(f"got {len(seen)} creates, missing {sorted(want - {r for _, r in seen})[:5]}"
                                 f" of {len(want)}; {seen[:3]}") from None
        assert frame["type"] == "delta", frame
        for item in frame["payload"]["changes"].get("inserts", []):
            seen.append((frame["payload"]["cursor"], item["id"]))
    return seen


def test_a_write_on_any_host_reaches_subscribers_on_every_host_in_order(cluster: Cluster) -> None:
    sockets = [subscribe(host.url)[0] for host in cluster.hosts for _ in range(2)]  # likely both workers
    ids = [create(cluster.hosts[i % 3].url if i % 2 else cluster.url, f"n{i}") for i in range(30)]
    received = [creates_until(ws, set(ids)) for ws in sockets]
    orders = [[rid for _, rid in seen] for seen in received]
    assert all(order == orders[0] for order in orders), "every subscriber sees one order"
    assert sorted(orders[0]) == sorted(ids) and len(orders[0]) == len(ids)  # no gap, no duplicate
    for ws in sockets:
        ws.close()


def test_kill_9_mid_burst_loses_no_acknowledged_write_and_subscribers_resume(cluster: Cluster) -> None:
    victim = cluster.hosts[1]
    ws, _cursor = subscribe(victim.url)
    acknowledged: list[str] = []
    failures: list[str] = []

    def burst() -> None:
        for i in range(120):
            try:
                acknowledged.append(create(cluster.url, f"b{i}"))
            except (AssertionError, OSError) as exc:
                failures.append(str(exc))  # in flight on the victim: not acknowledged

    writer = threading.Thread(target=burst)
    writer.start()
    seen: list[tuple[int, str]] = []
    while len(acknowledged) < 20:
        seen = creates_until(ws, set(acknowledged[:1]), seen) if acknowledged else seen
    victim.kill()
    with pytest.raises(Exception):  # noqa: B017 - the socket dies with its host, however it is reported
        while True:
            creates_until(ws, {"never"}, seen)
    last = max(cursor for cursor, _ in seen)
    again, _ = subscribe(cluster.url, since=last)  # through nginx: another host
    writer.join(timeout=120)
    assert not writer.is_alive()
    seen = creates_until(again, set(acknowledged) - {rid for _, rid in seen}, seen)
    ids = [rid for _, rid in seen]
    assert len(ids) == len(set(ids)), "no duplicate across the resume"
    assert set(acknowledged) <= set(ids), "no acknowledged write is lost"
    status, body = _list_ids(cluster.url)
    assert status == 200 and set(acknowledged) <= body
    again.close()
    victim.restart()  # the host comes back and catches up: a subscriber there replays from any cursor
    back, _ = subscribe(victim.url, since=last)
    replay = creates_until(back, set(acknowledged) - {rid for cursor, rid in seen if cursor <= last})
    assert len(replay) == len({rid for _, rid in replay})
    back.close()


def _list_ids(url: str) -> tuple[int, set[str]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    conn.request("GET", "/api/collections/notes?perPage=500")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, {item["id"] for item in body.get("items", [])}


TICK = 'def handler(req, res):\n    return res.json({"ok": True})\n'
TICK_MANIFEST = "runtime: python\nschedules:\n  - {name: tick, type: interval, expression: 1s}\n"


def _lease_holder(pg_url: str) -> str | None:
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT holder FROM _alyx_leases WHERE name = 'scheduler' AND expires_at >= "
                    "(now() AT TIME ZONE 'utc')")
        row = cur.fetchone()
    return str(row[0]) if row else None


def test_schedules_run_once_per_due_time_and_the_lease_moves_when_its_host_dies(
        tmp_path: Path, pg_url: str) -> None:
    for tool in ("ip", "nginx", "socat"):
        if shutil.which(tool) is None or os.geteuid() != 0:
            pytest.skip(f"needs root and {tool}")
    project = write_project(tmp_path / "project", SCHEMA, files={"tick/index.py": TICK,
                                                                  "tick/manifest.yaml": TICK_MANIFEST})
    lease = 3
    cluster = Cluster(tmp_path, project, pg_url, REDIS, size=3,
                      env={"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_SCHEDULES_LEASE_SECONDS": str(lease)})
    try:
        deadline = time.monotonic() + 20
        while (holder := _lease_holder(pg_url)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert holder, "some worker holds the scheduler lease"
        pid = int(holder.split(":")[1])
        leader = next(h for h in cluster.hosts if h.proc and os.getpgid(pid) == h.proc.pid)
        time.sleep(3)
        leader.kill()
        killed = time.monotonic()
        while (after := _lease_holder(pg_url)) in (None, holder) and time.monotonic() - killed < 4 * lease:
            time.sleep(0.1)
        moved = time.monotonic() - killed
        assert after not in (None, holder), "another host took the lease"
        assert moved <= lease + 2, f"the lease moved after {moved:.1f} s (lease {lease} s)"
        time.sleep(3)
    finally:
        cluster.close()
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT payload FROM _alyx_jobs WHERE trigger_type = 'schedule'")
        due = [json.loads(p)["scheduled_for"] if isinstance(p, str) else p["scheduled_for"] for (p,) in cur]
    assert len(due) >= 4, due  # it ran before and after the take-over (six processes could each have run it)
    assert len(due) == len(set(due)), sorted(due)  # but once per due time
