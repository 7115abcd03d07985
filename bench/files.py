"""File fields: upload and download a 10 MB file through a real gunicorn worker, print its RSS growth.

    python bench/files.py [--size-mb 10] [--rounds 3] [--backend local|s3]

One `gunicorn -k gevent -w 1` worker serves a temporary project whose `docs` field takes files up to
64 MB. A warm-up round (a 1 MB file up and down) loads every code path first; then each round
uploads a file of --size-mb (multipart/form-data, sent from a file on disk) and downloads it in
64 KB reads, and the worker's resident memory (VmRSS from /proc) is read before and after. The
worker streams both ways (werkzeug spools the upload to a temporary file; the blob is copied to
storage and sent back in chunks), so growth stays far below the file's size. `--backend s3` runs
the same against moto's S3 server on loopback (needs requirements-dev.txt).
Not part of the test suite.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import HOST, ROOT, free_port, load_average

SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: docs, type: file, multiple: true, max_size: 64MB}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """The worker's resident memory (``VmHWM``: its peak so far) in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def worker_pid(log: Path, timeout: float = 30) -> int:
    """The worker's pid, from gunicorn's log (the master may have other, short-lived children)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.findall(r"Booting worker with pid: (\d+)", log.read_text())
        if found:
            return int(found[-1])
        time.sleep(0.2)
    raise RuntimeError("gunicorn started no worker")


def multipart_file(path: Path, size: int) -> tuple[Path, str]:
    """A multipart body holding ``size`` random bytes, written to ``path`` (the client streams it too)."""
    boundary = uuid.uuid4().hex
    with path.open("wb") as out:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"docs\"; filename=\"big.bin\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        left = size
        while left:
            chunk = min(left, 1 << 20)
            out.write(secrets.token_bytes(chunk))
            left -= chunk
        out.write(f"\r\n--{boundary}--\r\n".encode())
    return path, boundary


def upload(port: int, body: Path, boundary: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    with body.open("rb") as f:
        conn.request("POST", "/api/collections/posts", f, {
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(body.stat().st_size)})
        resp = conn.getresponse()
        data = resp.read()
    conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload: {resp.status} {data[:300]!r}")
    return json.loads(data)


def download(port: int, record: dict) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    conn.request("GET", f"/api/files/posts/{record['id']}/{record['docs'][0]}")
    resp = conn.getresponse()
    total = 0
    while chunk := resp.read(64 * 1024):
        total += len(chunk)
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"download: {resp.status}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-files-"))
    (tmp / "schema.yaml").write_text(SCHEMA)
    config = "server:\n  max_body_bytes: 80000000\n"
    moto = None
    if args.backend == "s3":
        import boto3
        from moto.server import ThreadedMotoServer

        moto_port = free_port()
        moto = ThreadedMotoServer(ip_address=HOST, port=moto_port, verbose=False)
        moto.start()
        endpoint = f"http://{HOST}:{moto_port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="alyx-bench")
        config += (f"storage:\n  s3:\n    endpoint: {endpoint}\n    bucket: alyx-bench\n    access_key: k\n"
                   "    secret: s\n    force_path_style: true\n")
    (tmp / "alyx.yaml").write_text(config)
    (tmp / "functions").mkdir()
    port = free_port()
    env = {**os.environ, "ALYX_PROJECT_DIR": str(tmp), "ALYX_AUTH_SECRET": "bench-" + "x" * 40,
           "ALYX_EVENTS_RUNNER": "off"}
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", "1",
                               "-b", f"{HOST}:{port}", "wsgi:app"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        worker = worker_pid(tmp / "server.log")
        deadline = time.time() + 30
        while True:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=1)
                conn.request("GET", "/api/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        small, small_boundary = multipart_file(tmp / "small.body", 1 << 20)
        big, big_boundary = multipart_file(tmp / "big.body", args.size_mb << 20)
        download(port, upload(port, small, small_boundary))  # warm-up: every code path loaded once
        time.sleep(0.5)
        start_kb, start_peak_kb = rss_kb(worker), rss_kb(worker, "VmHWM")
        print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"backend {args.backend}, load {load_average()}")
        print(f"worker RSS after warm-up: {start_kb / 1024:.1f} MB")
        for i in range(args.rounds):
            before = rss_kb(worker)
            t0 = time.perf_counter()
            record = upload(port, big, big_boundary)
            t1 = time.perf_counter()
            after_upload = rss_kb(worker)
            got = download(port, record)
            t2 = time.perf_counter()
            after = rss_kb(worker)
            assert got == args.size_mb << 20, got
            print(f"round {i + 1}: upload {args.size_mb} MB {t1 - t0:.2f} s, download {t2 - t1:.2f} s; RSS "
                  f"{before / 1024:.1f} → {after_upload / 1024:.1f} (after upload) → {after / 1024:.1f} MB "
                  f"(growth {(after - before) / 1024:+.2f} MB)")
        print(f"total worker RSS growth over {args.rounds} round(s) of {args.size_mb} MB: "
              f"{(rss_kb(worker) - start_kb) / 1024:+.2f} MB; peak RSS (VmHWM) "
              f"{start_peak_kb / 1024:.1f} → {rss_kb(worker, 'VmHWM') / 1024:.1f} MB")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if moto is not None:
            moto.stop()
        log.close()


if __name__ == "__main__":
    main()
