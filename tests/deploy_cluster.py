"""A test cluster on one machine: Alyx hosts in network namespaces, one PostgreSQL and one Redis, nginx.

Each host is a namespace (`ip netns`) joined to the root namespace by a veth pair 10.231.N.1 (root)
— 10.231.N.2 (host): traffic stays inside those links and loopback. PostgreSQL and Redis listen on
127.0.0.1 only, so a socat per host listens on 10.231.N.1 and forwards to them; nothing about the
system services changes. nginx (deploy/nginx.conf) runs in the root namespace and balances over the
hosts' gunicorns. Used by tests/test_deploy_cluster.py and bench/cluster.py; needs root.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.harness import ROOT, gunicorn_command
from tests.test_deploy_nginx import Nginx

PORT = 8090


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Host:
    """One Alyx host: a namespace, its veth link, socat bridges, and gunicorn with `workers` workers."""

    def __init__(self, tag: str, number: int, folder: Path) -> None:
        self.ns = f"alyx{tag}h{number}"
        self.root_if, self.ns_if = f"ax{tag}{number}r", f"ax{tag}{number}n"
        self.gateway, self.address = f"10.231.{number}.1", f"10.231.{number}.2"
        self.log = folder / f"host{number}.log"
        self.bridges: list[subprocess.Popen[bytes]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_with: tuple[Path, dict[str, str], int] | None = None
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.ns_if)
        run("ip", "link", "set", self.ns_if, "netns", self.ns)
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.root_if)
        run("ip", "link", "set", self.root_if, "up")
        for cmd in (["ip", "addr", "add", f"{self.address}/24", "dev", self.ns_if],
                    ["ip", "link", "set", self.ns_if, "up"], ["ip", "link", "set", "lo", "up"]):
            run("ip", "netns", "exec", self.ns, *cmd)
        for port in (5432, 6379):  # PostgreSQL and Redis, reachable from this host only at its gateway
            self.bridges.append(subprocess.Popen(
                ["socat", f"TCP-LISTEN:{port},bind={self.gateway},reuseaddr,fork", f"TCP:127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    @property
    def url(self) -> str:
        return f"http://{self.address}:{PORT}"

    def start(self, project: Path, env: dict[str, str], workers: int = 2, timeout: float = 40.0) -> None:
        self.started_with = (project, env, workers)
        command = gunicorn_command(PORT, workers)
        command[command.index("-b") + 1] = f"{self.address}:{PORT}"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *command], cwd=ROOT,
                                         env={**os.environ, "ALYX_PROJECT_DIR": str(project), **env},
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not healthy_at(self.address, PORT):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.ns} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def restart(self) -> None:
        """Start again as last started (after kill or stop)."""
        assert self.started_with is not None, "never started"
        self.start(*self.started_with)

    def kill(self) -> None:
        """SIGKILL gunicorn's whole process group: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def remove(self) -> None:
        self.stop()
        for bridge in self.bridges:  # socat forks a child per connection: end the whole group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(bridge.pid, signal.SIGTERM)
            bridge.wait(timeout=5)
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def healthy_at(host: str, port: int) -> bool:
    """Whether GET /api/health at host:port answers 200 (within a second)."""
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.request("GET", "/api/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def through(url: str, host: Host) -> str:
    """A 127.0.0.1 PostgreSQL/Redis URL as `host` reaches it (its gateway's bridge)."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("127.0.0.1", host.gateway).replace("localhost", host.gateway)
    return urlunsplit(parts._replace(netloc=netloc))


class Cluster:
    """`size` hosts on one project, database and broker; nginx in front."""

    def __init__(self, folder: Path, project: Path, database_url: str, broker: str, size: int = 3,
                 env: dict[str, str] | None = None, secret: str = "cluster-secret-" + "x" * 32) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the cluster needs root (ip netns)")
        tag = f"{os.getpid() % 10000}"
        self.hosts: list[Host] = []
        self.nginx: Nginx | None = None
        try:
            for number in range(1, size + 1):
                self.hosts.append(Host(tag, number, folder))
            time.sleep(0.2)  # socat listening
            for host in self.hosts:
                host.start(project, {"ALYX_DATABASE_URL": through(database_url, host),
                                     "ALYX_REALTIME_BROKER": through(broker, host), "ALYX_AUTH_SECRET": secret,
                                     **(env or {})})
            self.nginx = Nginx(folder / "nginx", [f"{h.address}:{PORT}" for h in self.hosts], read_timeout=75)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return f"http://{self.nginx.host}:{self.nginx.port}"

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for host in self.hosts:
            host.remove()


if __name__ == "__main__":
    sys.exit("import this module (tests/test_deploy_cluster.py, bench/cluster.py)")
