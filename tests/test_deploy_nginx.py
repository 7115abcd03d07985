"""deploy/nginx.conf with real nginx (Debian's) in front of `gunicorn -k gevent`: REST, the WebSocket
upgrade and heartbeats, the body limit, and the client address behind server.trusted_proxies.

Clients connect from other loopback addresses (127.0.0.5, ...) than nginx's (127.0.0.1, the one
trusted proxy), so the address Alyx sees can be told apart: the API rate limit is keyed by it.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from alyx.proxies import TrustedProxies, parse_networks
from tests.conftest import NOTES_SCHEMA, write_project
from tests.harness import ROOT, LiveServer, free_port

SECRET = "nginx-test-secret-" + "x" * 32
RATE = 5
READ_TIMEOUT = 3  # nginx's proxy_read_timeout on /api/realtime in this test (75 s in the file)
SCHEMA = NOTES_SCHEMA


class Nginx:
    """nginx -p DIR with deploy/nginx.conf included, upstream and listen address rewritten."""

    def __init__(self, folder: Path, upstreams: list[str], read_timeout: int = READ_TIMEOUT,
                 listen: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.host = listen
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        servers = "".join(f"    server {u} max_fails=1 fail_timeout=5s;\n" for u in upstreams)
        site = re.sub(r"    server 127\.0\.0\.1:8090[^\n]*\n", servers, site)
        site = site.replace("listen 80;", f"listen {listen}:{self.port};").replace("listen [::]:80;\n", "")
        site = site.replace("proxy_read_timeout 75s;", f"proxy_read_timeout {read_timeout}s;")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "alyx.conf").write_text(site)
        temps = "".join(f"    {kind}_temp_path {folder}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            f"daemon off;\nuser root;\nworker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
            f"events {{ worker_connections 4096; }}\n"
            f"http {{\n    access_log {folder}/access.log;\n{temps}    include {folder}/alyx.conf;\n}}\n")
        self.proc = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((listen, self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    error = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"nginx exited: {error}") from None
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def nginx_available() -> None:
    if shutil.which("nginx") is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (scripts/provision.sh installs it)")
        pytest.skip("nginx is not installed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Nginx]]:
    nginx_available()
    folder = tmp_path_factory.mktemp("nginx")
    project = write_project(folder / "project", SCHEMA)
    server = LiveServer(project, secret=SECRET, env={
        "ALYX_SERVER_TRUSTED_PROXIES": "127.0.0.1", "ALYX_API_RATE_LIMIT": str(RATE),
        "ALYX_API_RATE_LIMIT_WINDOW": "600", "ALYX_REALTIME_HEARTBEAT_SECONDS": "1"})
    proxy = Nginx(folder / "nginx", [f"127.0.0.1:{server.port}"])
    try:
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def request(host: str, port: int, method: str, path: str, body: Any = None, source: str = "127.0.0.5",
            headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30, source_address=(source, 0))
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_rest_through_nginx(stack: tuple[LiveServer, Nginx]) -> None:
    _server, proxy = stack
    status, body = request(proxy.host, proxy.port, "POST", "/api/collections/notes", {"title": "hi"},
                           source="127.0.0.20")
    assert status in (200, 201), body
    rid = json.loads(body)["id"]
    status, body = request(proxy.host, proxy.port, "GET", f"/api/collections/notes/{rid}", source="127.0.0.20")
    assert status == 200 and json.loads(body)["title"] == "hi"


def test_body_limit_matches_max_body_bytes(stack: tuple[LiveServer, Nginx]) -> None:
    _server, proxy = stack
    limit = 1_048_576  # server.max_body_bytes default = client_max_body_size 1m
    status, body = request(proxy.host, proxy.port, "POST", "/api/collections/notes", raw=b"x" * (limit + 1),
                           source="127.0.0.21")
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"  # nginx's own refusal, in the one error shape
    fits = json.dumps({"title": "y" * (limit - 100)}).encode()
    status, body = request(proxy.host, proxy.port, "POST", "/api/collections/notes", raw=fits, source="127.0.0.22")
    assert status == 201, body  # nginx lets it through, and so does Alyx


def _ws(proxy: Nginx, source: str) -> Any:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10, source_address=(source, 0))
    return connect(f"ws://{proxy.host}:{proxy.port}/api/realtime", sock=sock, open_timeout=10, compression=None,
                   max_size=4 * 2**20)  # the snapshot holds the body-limit test's 1 MB note


def test_websocket_upgrade_and_heartbeats_through_nginx(stack: tuple[LiveServer, Nginx]) -> None:
    _server, proxy = stack
    with _ws(proxy, "127.0.0.30") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"collection": "notes"}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        time.sleep(READ_TIMEOUT + 2)  # idle longer than nginx's read timeout: Alyx's pings keep it open
        status, body = request(proxy.host, proxy.port, "POST", "/api/collections/notes", {"title": "live"},
                               source="127.0.0.31")
        assert status in (200, 201)
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "delta" and json.loads(body)["id"] in json.dumps(frame), frame


def test_rate_limit_sees_the_real_client_and_cannot_be_spoofed(stack: tuple[LiveServer, Nginx]) -> None:
    server, proxy = stack
    statuses = [request(proxy.host, proxy.port, "GET", "/api/health", source="127.0.0.5")[0]
                for _ in range(RATE + 1)]
    assert statuses[:RATE] == [200] * RATE and statuses[RATE] == 429, statuses  # keyed by 127.0.0.5
    assert request(proxy.host, proxy.port, "GET", "/api/health", source="127.0.0.6")[0] == 200  # not by nginx's
    # A client naming the limited address, through nginx: nginx appends the real peer, which is taken.
    spoof = {"X-Forwarded-For": "127.0.0.5"}
    assert request(proxy.host, proxy.port, "GET", "/api/health", source="127.0.0.7", headers=spoof)[0] == 200
    # The same header sent straight to gunicorn from an untrusted peer is ignored.
    assert request("127.0.0.1", server.port, "GET", "/api/health", source="127.0.0.8", headers=spoof)[0] == 200
    # And a spoof cannot borrow someone's limit the other way: the limited client stays limited.
    other = {"X-Forwarded-For": "10.9.9.9"}
    assert request(proxy.host, proxy.port, "GET", "/api/health", source="127.0.0.5", headers=other)[0] == 429


def _seen(networks: str, peer: str, headers: dict[str, str]) -> tuple[str, str]:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http",
               **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}}
    TrustedProxies(app, parse_networks(networks))(environ, lambda *a: None)
    return seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]


def test_forwarded_headers_only_from_trusted_proxies() -> None:
    fwd = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.0.0.2", "X-Forwarded-Proto": "https"}
    assert _seen("127.0.0.1, 10.0.0.0/8", "127.0.0.1", fwd) == ("203.0.113.7", "https")  # trusted hops skipped
    assert _seen("127.0.0.1", "198.51.100.1", fwd) == ("198.51.100.1", "http")  # untrusted peer: ignored
    assert _seen("127.0.0.1", "127.0.0.1", {}) == ("127.0.0.1", "http")
    assert _seen("::1", "::1", {"X-Forwarded-For": "2001:db8::5"}) == ("2001:db8::5", "http")
    with pytest.raises(ValueError):
        parse_networks("127.0.0.1, not-an-ip")


def test_what_nginx_refuses_itself_comes_in_the_error_shape(stack: tuple[LiveServer, Nginx],
                                                             tmp_path: Path) -> None:
    _server, proxy = stack
    status, body = request(proxy.host, proxy.port, "GET", "/api/collections/notes?filter=" + "a" * 9000,
                           source="127.0.0.23")
    assert status == 414 and json.loads(body)["error"]["code"] == "uri_too_long"
    status, body = request(proxy.host, proxy.port, "GET", "/api/health", source="127.0.0.24",
                           headers={"X-Big": "b" * 9000})
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
    dead = Nginx(tmp_path / "dead", [f"127.0.0.1:{free_port()}"])  # no Alyx host behind it
    try:
        status, body = request(dead.host, dead.port, "GET", "/api/health", source="127.0.0.25")
    finally:
        dead.stop()
    assert status == 502 and json.loads(body)["error"] == {
        "code": "unavailable", "message": "No Alyx host answered; try again shortly.", "details": {}}
