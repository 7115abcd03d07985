#!/usr/bin/env python3
"""Realtime (GET /api/realtime) on this machine: idle connections, delivery latency, fan-out, REST alongside.

    /work/venv/bin/python bench/realtime.py                 # the full run recorded in docs/benchmarks.md
    /work/venv/bin/python bench/realtime.py --idle 2000 --rates 10,50 --duration 4   # quick check

Alyx runs as `gunicorn -c gunicorn.conf.py -w 2 wsgi:app` (gevent, SQLite) on a temporary project
this script writes; clients are separate processes using the `websockets` asyncio client, all on
127.0.0.1, sharing the machine's cores with the server. Phases:

  idle     hold N connections, each subscribed to a collection nobody writes; report worker RSS
           before and after, i.e. memory per connection (server side)
  latency  S subscribers of one collection (no filter, public rules); one writer POSTs at R writes/s
           for D seconds; latency = time the delta frame is parsed by the client − the record's
           created_at (set by the server just before the write transaction commits). Repeated for
           each rate in --rates and each coalescing window in --coalesce; the highest rate whose p99
           stays under 100 ms is reported.
  fanout   one worker (-w 1), S subscribers, 4 writers as fast as they can for D seconds: deltas
           frames/s and changes/s delivered by that worker.
  rest     creates/s and GET-by-id/s from 4 client processes, with no subscriber connected and with
           S subscribers of the collection being written (so every create fans out S frames).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import HOST, LiveServer, percentile  # noqa: E402

SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: views, type: int, default: 0}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: idle
    fields:
      - {name: title, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""


# -- server -----------------------------------------------------------------------------------------
def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 65536), hard), hard))


class Server(LiveServer):
    """gunicorn on a temporary project with SCHEMA (and a raised open-files limit)."""

    def __init__(self, workers: int, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="alyx-bench-rt-"))
        (self.dir / "schema.yaml").write_text(SCHEMA)
        super().__init__(self.dir, workers, env, secret="b" * 40, preexec_fn=_raise_nofile)

    def rss_mb(self) -> float:
        total = 0
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self, timeout: float = 20.0) -> None:
        super().stop(timeout)


# -- subscriber processes ------------------------------------------------------------------------
_ts_cache: dict[str, float] = {}


def _created(value: str) -> float:
    found = _ts_cache.get(value)
    if found is None:
        found = dt.datetime.fromisoformat(value.rstrip("Z")).replace(tzinfo=dt.timezone.utc).timestamp()
        if len(_ts_cache) > 100_000:
            _ts_cache.clear()
        _ts_cache[value] = found
    return found


def subscriber_proc(url: str, count: int, collection: str, pipe) -> None:
    """`count` subscribers in one process: a minimal WebSocket client on raw sockets and one selector,
    so that the client's own cost per frame (a few µs) does not dominate what is measured."""
    import base64
    import selectors

    import orjson

    _raise_nofile()
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    handshake = (f"GET /api/realtime HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode()

    def client_frame(payload: bytes, opcode: int = 1) -> bytes:  # masked with a zero key: payload unchanged
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        else:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        return head + b"\0\0\0\0" + payload

    subscribe = client_frame(orjson.dumps({"type": "subscribe", "payload": {"collection": collection}}))

    def read_frames(buf: bytearray) -> list[tuple[int, bytes]]:
        out = []
        while len(buf) >= 2:
            op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                break
            out.append((op, bytes(buf[off:off + n])))
            del buf[:off + n]
        return out

    def open_batch(size: int) -> list[tuple[socket.socket, bytearray]]:
        batch = []
        for _ in range(size):
            for _attempt in range(50):
                try:
                    sock = socket.create_connection((host, int(port)), timeout=60)
                    sock.sendall(handshake)
                    break
                except OSError:
                    time.sleep(0.2)
            batch.append((sock, bytearray()))
        for sock, buf in batch:
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(4096)
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head[:100]
            buf[:] = rest
            sock.sendall(subscribe)
        for sock, buf in batch:
            got = 0
            while got < 2:  # connected, snapshot
                frames = read_frames(buf)
                got += sum(1 for op, _ in frames if op == 1)
                if got < 2:
                    buf += sock.recv(65536)
            sock.setblocking(False)
        return batch

    conns: list[tuple[socket.socket, bytearray]] = []
    while len(conns) < count:
        conns += open_batch(min(100, count - len(conns)))
    sel = selectors.DefaultSelector()
    for sock, buf in conns:
        sel.register(sock, selectors.EVENT_READ, buf)
    pipe.send(("ready", len(conns)))
    measuring, frames_seen, received = False, 0, []
    stop_at: float | None = None
    last_change = time.monotonic()
    while True:
        for key, _ in sel.select(timeout=0.05):
            sock, buf = key.fileobj, key.data
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                continue
            now = time.time()
            buf += data
            for op, payload in read_frames(buf):
                if op == 9:
                    sock.send(client_frame(payload, 10))
                elif op == 1 and measuring:
                    frame = orjson.loads(payload)
                    if frame.get("type") == "delta":
                        frames_seen += 1
                        last_change = time.monotonic()
                        for doc in frame["payload"]["changes"]["inserts"]:
                            received.append((doc["id"], now, now - _created(doc["created_at"])))
        if stop_at is not None and time.monotonic() - last_change >= 1.0:  # 1 s without a frame
            measuring, stop_at = False, None
            pipe.send((received, frames_seen, len(received)))
        if pipe.poll():
            command = pipe.recv()
            if command == "start":
                measuring, frames_seen, received = True, 0, []
                pipe.send("started")
            elif command == "stop":
                stop_at, last_change = time.monotonic(), time.monotonic()
            elif command == "close":
                break
    for sock, _ in conns:
        sock.close()
    pipe.send("closed")


class Subscribers:
    """`total` subscribers split over `procs` client processes."""

    def __init__(self, server: Server, total: int, collection: str, procs: int) -> None:
        url = server.url.replace("http", "ws", 1) + "/api/realtime"
        self.pipes, self.procs = [], []
        share = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        for n in share:
            parent, child = mp.Pipe()
            p = mp.Process(target=subscriber_proc, args=(url, n, collection, child), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)
        self.connected = sum(pipe.recv()[1] for pipe in self.pipes)

    def start(self) -> None:
        for pipe in self.pipes:
            pipe.send("start")
        for pipe in self.pipes:
            assert pipe.recv() == "started"

    def stop(self) -> tuple[list[tuple[str, float, float]], int, int]:
        for pipe in self.pipes:
            pipe.send("stop")
        lat, frames, changes = [], 0, 0
        for pipe in self.pipes:
            a, b, c = pipe.recv()
            lat += a
            frames += b
            changes += c
        return lat, frames, changes

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("close")
        for pipe in self.pipes:
            try:
                pipe.recv()
            except EOFError:
                pass
        for p in self.procs:
            p.join(10)


# -- writers and REST load -----------------------------------------------------------------------
def writer_proc(port: int, rate: float, duration: float, out) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    body = json.dumps({"title": "bench"}).encode()
    start = time.perf_counter()
    written = 0
    acks: dict[str, float] = {}
    while True:
        now = time.perf_counter() - start
        if now >= duration:
            break
        if rate:
            due = written / rate
            if due > now:
                time.sleep(due - now)
        conn.request("POST", "/api/collections/posts", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status == 201:
            acks[json.loads(data)["id"]] = time.time()
            written += 1
    out.put((written, time.perf_counter() - start, acks))


def write(server: Server, rate: float, duration: float, writers: int = 1) -> tuple[float, dict[str, float]]:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=writer_proc, args=(server.port, rate / writers if rate else 0, duration, out))
             for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    acks: dict[str, float] = {}
    for _, _, a in results:
        acks.update(a)
    return sum(r[0] for r in results) / max(r[1] for r in results), acks


def rest_proc(port: int, kind: str, duration: float, ids: list[str], out) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    body = json.dumps({"title": "rest"}).encode()
    done, i = 0, 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        if kind == "create":
            conn.request("POST", "/api/collections/posts", body, {"Content-Type": "application/json"})
        else:
            conn.request("GET", f"/api/collections/posts/{ids[i % len(ids)]}")
            i += 1
        resp = conn.getresponse()
        resp.read()
        done += resp.status < 300
    out.put(done)


def rest(server: Server, kind: str, duration: float, clients: int = 4) -> float:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    conn.request("GET", "/api/collections/posts?perPage=200&skipTotal=1")
    ids = [item["id"] for item in json.loads(conn.getresponse().read())["items"]]
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=rest_proc, args=(server.port, kind, duration, ids, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / duration


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of latencies in seconds, in milliseconds."""
    return percentile(values, p) * 1000


# -- phases ---------------------------------------------------------------------------------------
def phase_idle(n: int, procs: int) -> dict:
    server = Server(2, {"ALYX_REALTIME_MAX_CONNECTIONS": str(n + 100)})
    try:
        time.sleep(1)
        before = server.rss_mb()
        started = time.perf_counter()
        subs = Subscribers(server, n, "idle", procs)
        took = time.perf_counter() - started
        time.sleep(3)
        after = server.rss_mb()
        subs.close()
        return {"connections": subs.connected, "connect_seconds": took, "rss_before_mb": before,
                "rss_after_mb": after, "kb_per_connection": (after - before) * 1024 / max(subs.connected, 1)}
    finally:
        server.stop()


def phase_latency(subscribers: int, rates: list[float], duration: float, coalesce_ms: int, procs: int) -> list[dict]:
    server = Server(2, {"ALYX_REALTIME_COALESCE_MS": str(coalesce_ms)})
    rows = []
    try:
        subs = Subscribers(server, subscribers, "posts", procs)
        # Warm up with a full, discarded step: the first seconds after 1,000 subscribes are slower.
        subs.start()
        write(server, rates[0], duration)
        subs.stop()
        for rate in rates:
            subs.start()
            achieved, acks = write(server, rate, duration)
            received, frames, changes = subs.stop()
            from_ack = [max(t - acks[i], 0.0) for i, t, _ in received if i in acks]
            from_created = [c for i, _, c in received if i in acks]
            rows.append({"coalesce_ms": coalesce_ms, "subscribers": subs.connected, "rate": rate,
                         "achieved": achieved, "p50": pct(from_ack, 50), "p99": pct(from_ack, 99),
                         "max": pct(from_ack, 100), "created_p50": pct(from_created, 50),
                         "created_p99": pct(from_created, 99), "frames": frames, "changes": len(from_ack),
                         "expected": len(acks) * subs.connected})
            r = rows[-1]
            per_id: dict[str, int] = {}
            for i, _, _ in received:
                per_id[i] = per_id.get(i, 0) + 1
            order = list(acks)
            short = [order.index(i) for i in order if per_id.get(i, 0) < subs.connected]
            r["incomplete_writes"] = short  # positions (in write order) of writes some subscriber did not get
            print(f"  latency coalesce={coalesce_ms}ms rate={rate}/s achieved={achieved:.0f}/s "
                  f"ack→frame p50={r['p50']:.1f}ms p99={r['p99']:.1f}ms | "
                  f"created_at→frame p50={r['created_p50']:.1f}ms p99={r['created_p99']:.1f}ms | "
                  f"frames={frames} changes={r['changes']}/{r['expected']} incomplete={short[:10]} of {len(order)}",
                  flush=True)
            if rows[-1]["p99"] > 2000:  # far past the target: higher rates only take longer
                break
        subs.close()
    finally:
        server.stop()
    return rows


def phase_fanout(subscribers: int, duration: float, coalesce_ms: int, procs: int) -> dict:
    server = Server(1, {"ALYX_REALTIME_COALESCE_MS": str(coalesce_ms), "ALYX_REALTIME_SEND_QUEUE_MAX": "100000"})
    try:
        subs = Subscribers(server, subscribers, "posts", procs)
        subs.start()
        achieved, acks = write(server, 0, duration, writers=4)
        received, frames, changes = subs.stop()
        lat = [max(t - acks[i], 0.0) for i, t, _ in received if i in acks]
        subs.close()
        return {"coalesce_ms": coalesce_ms, "subscribers": subs.connected, "writes_per_s": achieved,
                "frames_per_s": frames / duration, "changes_per_s": changes / duration,
                "p50": pct(lat, 50), "p99": pct(lat, 99)}
    finally:
        server.stop()


def phase_rest(subscribers: int, duration: float, procs: int) -> dict:
    server = Server(2, {})
    try:
        write(server, 0, 2, writers=2)  # some rows to read
        result = {"create_alone": rest(server, "create", duration), "get_alone": rest(server, "get", duration)}
        subs = Subscribers(server, subscribers, "posts", procs)
        result["get_with_subs"] = rest(server, "get", duration)  # first: creates leave fan-out work behind
        result["create_with_subs"] = rest(server, "create", duration)
        result["subscribers"] = subs.connected
        subs.close()
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rates", default="10,25,50,100,200,400")
    parser.add_argument("--coalesce", default="0,20")
    parser.add_argument("--duration", type=float, default=6)
    parser.add_argument("--phases", default="idle,latency,fanout,rest")
    args = parser.parse_args()
    _raise_nofile()
    phases = args.phases.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    print(f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}", flush=True)
    report: dict = {}
    if "idle" in phases:
        report["idle"] = phase_idle(args.idle, procs=4)
        print("idle:", json.dumps(report["idle"]), flush=True)
    if "latency" in phases:
        report["latency"] = []
        for window in (int(c) for c in args.coalesce.split(",")):
            report["latency"] += phase_latency(args.subscribers, rates, args.duration, window, procs=2)
        for window in sorted({r["coalesce_ms"] for r in report["latency"]}):
            ok = [r["achieved"] for r in report["latency"] if r["coalesce_ms"] == window and r["p99"] < 100]
            print(f"highest rate with p99 < 100 ms (coalesce {window} ms): {max(ok) if ok else 0:.0f} writes/s",
                  flush=True)
    if "fanout" in phases:
        report["fanout"] = [phase_fanout(args.subscribers, args.duration, w, procs=2)
                            for w in (int(c) for c in args.coalesce.split(","))]
        for row in report["fanout"]:
            print("fanout:", json.dumps(row), flush=True)
    if "rest" in phases:
        report["rest"] = phase_rest(args.subscribers, args.duration, procs=2)
        print("rest:", json.dumps(report["rest"]), flush=True)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
