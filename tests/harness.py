"""A live Alyx server for tests and benchmarks: gunicorn on a free loopback port, and its numbers.

Used by tests/conftest.py and by the scripts in bench/ (which put the repository root on sys.path
and `from tests.harness import ...`). Standard library only, so that a bench script needs nothing
the server does not. Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def eventually(probe: Callable[[], Any], what: str = "condition", timeout: float = 60.0) -> Any:
    """Poll ``probe`` until it returns something truthy, and return that; fail naming ``what`` (and the
    last value seen) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank `p`-th percentile (0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def gunicorn_command(port: int, workers: int) -> list[str]:
    """Alyx as in production: `gunicorn -c gunicorn.conf.py -w N wsgi:app` (gevent workers); run in ROOT."""
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", str(workers),
            "-b", f"{HOST}:{port}", "wsgi:app"]


def healthy(port: int) -> bool:
    """Whether GET /api/health on this port answers 200 (within a second)."""
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", "/api/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def wait_healthy(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0,
                 log: Path | None = None, what: str = "server") -> None:
    """Wait until the server answers /api/health; raise (with the log's tail) if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {tail(log)}")
        if healthy(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer /api/health within {timeout}s: {tail(log)}")


def tail(log: Path | None, size: int = 2000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-size:]


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    return [child for child, parent in _parents().items() if parent == pid]


def gunicorn_workers(master: int) -> list[int]:
    """The worker processes of the gunicorn master `master` (its children that run gunicorn)."""
    found = []
    for pid in children(master):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"gunicorn" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    by_parent: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        by_parent.setdefault(parent, []).append(child)
    found, stack = [], [pid]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


class LiveServer:
    """A real `gunicorn -k gevent` server for the project folder, on a free port, logging to a file.

    `secret` is ALYX_AUTH_SECRET; `env` is added to this process's environment. With
    `new_session` the server leads its own process group, so `stop()` signals all it started
    and `kill()` SIGKILLs every descendant (sandboxes included).
    """

    def __init__(self, project: Path, workers: int = 2, env: dict[str, str] | None = None, *,
                 secret: str, log: Path | None = None, append_log: bool = False, new_session: bool = False,
                 preexec_fn: Callable[[], None] | None = None, timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log or project / "gunicorn.log"
        self.new_session = new_session
        full_env = {**os.environ, "ALYX_PROJECT_DIR": str(project), "ALYX_AUTH_SECRET": secret, **(env or {})}
        with self.log.open("a" if append_log else "w") as out:
            self.proc = subprocess.Popen(gunicorn_command(self.port, workers), cwd=ROOT, env=full_env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=new_session,
                                         preexec_fn=preexec_fn)
        try:
            wait_healthy(self.port, self.proc, timeout, self.log, "gunicorn")
        except RuntimeError:
            self.stop()
            raise

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes (the master's children that run gunicorn)."""
        return gunicorn_workers(self.proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the group, with new_session), then SIGKILL after `timeout`."""
        if self.proc.poll() is not None:
            return
        try:
            if self.new_session:
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.terminate()
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if self.new_session:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the server and all it started: no shutdown code runs anywhere."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

