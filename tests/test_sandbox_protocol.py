"""alyx.sandbox.protocol against the real Python runtime shim on a real Unix socket: keep-alive
HTTP, the secret, the context header, and the two failure kinds (RuntimeGone, RuntimeTimeout)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from alyx.sandbox.protocol import RawResponse, RuntimeClient, RuntimeGone, RuntimeTimeout, encode_context
from tests.harness import ROOT

SECRET = "runtime-secret-0123456789"
HANDLER = '''
import threading
import time

def handler(req, res):
    if req.path == "/slow":
        time.sleep(float(req.query.get("s", "1")))
    return res.status(201).header("X-Echo", req.headers.get("x-test", "")).json(
        {"input": req.input, "auth": req.auth, "trigger": req.trigger, "body": req.body,
         "thread": threading.get_ident()})
'''


@dataclass
class Shim:
    proc: subprocess.Popen[bytes]
    socket_path: str
    code_dir: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[Shim]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(HANDLER))
    sock = str(tmp_path / "rt.sock")
    (tmp_path / "rt.secret").write_text(SECRET)
    env = {"PATH": os.environ.get("PATH", ""), "ALYX_SOCKET": sock, "ALYX_SECRET_FILE": str(tmp_path / "rt.secret"),
           "ALYX_LIFELINE": "stdin"}
    proc = subprocess.Popen([sys.executable, "-u", "-I", str(ROOT / "runtimes" / "python" / "shim.py")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield Shim(proc, sock, code)
    proc.kill()
    proc.wait(timeout=10)


def ready_client(shim: Shim, secret: str = SECRET) -> RuntimeClient:
    client = RuntimeClient(shim.socket_path, secret)
    client.wait_ready(time.monotonic() + 15, shim.alive)
    return client


def bind(client: RuntimeClient, shim: Shim) -> None:
    body = json.dumps({"code_dir": str(shim.code_dir), "entry": "index.py", "function": "echo"}).encode()
    response = client.request("POST", "/__rt/init", [("Content-Type", "application/json")], body)
    assert response.status == 200, response.body


def test_health_over_the_socket_once_ready(shim: Shim) -> None:
    client = ready_client(shim)
    response = client.request("GET", "/__rt/health")
    assert response.status == 200
    assert response.json()["runtime"] == "python" and response.json()["pid"] == shim.proc.pid
    assert response.header("CONTENT-TYPE") == response.header("content-type") == "application/json"
    assert response.header("x-not-there") is None
    client.close()


def test_a_wrong_secret_is_refused_by_the_runtime(shim: Shim) -> None:
    ready_client(shim)
    response = RuntimeClient(shim.socket_path, "not-the-secret").request("GET", "/__rt/health")
    assert response.status == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_the_context_header_reaches_the_handler(shim: Shim) -> None:
    client = ready_client(shim)
    bind(client, shim)
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    context = {"input": {"n": 1, "when": when}, "auth": {"id": "u1"}, "trigger": "schedule"}
    response = client.request("POST", "/run?x=1", [("x-alyx-context", encode_context(context)), ("X-Test", "t")],
                              b"hello")
    assert response.status == 201, response.body
    payload = response.json()
    assert payload["input"] == {"n": 1, "when": str(when)}  # non-JSON values travel as text
    assert payload["auth"] == {"id": "u1"} and payload["trigger"] == "schedule" and payload["body"] == "hello"
    assert response.header("x-echo") == "t"
    assert response.header("x-alyx-outcome") == "ok"


def test_sequential_calls_reuse_one_connection_and_concurrent_ones_open_more(shim: Shim) -> None:
    client = ready_client(shim)
    bind(client, shim)
    # The shim serves each connection on its own thread: the same thread means the same connection.
    first, second = (client.request("GET", "/").json()["thread"] for _ in range(2))
    assert first == second
    with ThreadPoolExecutor(3) as pool:
        threads = set(pool.map(lambda _: client.request("GET", "/slow?s=0.3").json()["thread"], range(3)))
    assert len(threads) == 3


def test_a_call_past_its_timeout_raises_runtime_timeout(shim: Shim) -> None:
    client = ready_client(shim)
    bind(client, shim)
    started = time.monotonic()
    with pytest.raises(RuntimeTimeout):
        client.request("GET", "/slow?s=3", timeout=0.3)
    assert time.monotonic() - started < 2
    assert client.request("GET", "/").status == 201  # the timed-out connection was dropped, not reused


def test_a_dead_runtime_raises_runtime_gone(shim: Shim) -> None:
    client = ready_client(shim)
    bind(client, shim)
    assert client.request("GET", "/").status == 201
    shim.proc.kill()
    shim.proc.wait(timeout=10)
    with pytest.raises(RuntimeGone):
        client.request("GET", "/")
    with pytest.raises(RuntimeGone, match="exited during start"):
        RuntimeClient(shim.socket_path, SECRET).wait_ready(time.monotonic() + 5, shim.alive)


def test_wait_ready_gives_up_at_the_deadline(tmp_path: Path) -> None:
    client = RuntimeClient(str(tmp_path / "nobody.sock"), SECRET)
    started = time.monotonic()
    with pytest.raises(RuntimeTimeout):
        client.wait_ready(time.monotonic() + 0.3, lambda: True)
    assert 0.25 < time.monotonic() - started < 3


def test_raw_response_json_of_an_empty_body_is_none() -> None:
    assert RawResponse(204, [], b"").json() is None
    assert RawResponse(200, [("X-A", "1")], b'{"a": 1}').json() == {"a": 1}


def test_the_shim_reads_paths_and_queries_as_urllib_does(shim: Shim) -> None:
    from urllib.parse import parse_qs, unquote

    (shim.code_dir / "index.py").write_text(
        "def handler(req, res):\n    return res.json({'path': req.path, 'query': req.query_all})\n")
    client = ready_client(shim)
    bind(client, shim)
    path, query = "/api/functions/x/a%20b/%C3%A9/%zz/100%", "a=1&a=2&b=&c&d=x+y%2Bz&%C3%A9=%E2%82%AC&&bad=%e2%82"
    response = client.request("GET", f"{path}?{query}")
    assert response.status == 200, response.body
    assert response.json() == {"path": unquote(path, errors="replace"),
                               "query": parse_qs(query, keep_blank_values=True)}


def test_the_shim_refuses_what_is_not_http(shim: Shim) -> None:
    import socket

    ready_client(shim)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(shim.socket_path)
        raw.sendall(b"NOT HTTP\r\n\r\n")
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"bad_request" in answer
    head = RuntimeClient(shim.socket_path, SECRET).request("HEAD", "/__rt/health")
    assert head.status == 200 and head.body == b""  # HEAD: the headers only


def test_the_node_end_mark_follows_output_a_full_pipe_held_back(tmp_path: Path) -> None:
    """console.log into a pipe nobody is reading queues in Node's stream (the pipe is full, as Docker's
    is under load); the end mark of the call must come after that output, not overtake it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.mjs").write_text("export default (req, res) => {\n"
                                    "  for (let i = 0; i < 3000; i++) console.log('x'.repeat(99));\n"
                                    "  return res.text('done');\n};\n")
    sock = str(tmp_path / "rt.sock")
    (tmp_path / "rt.secret").write_text(SECRET)
    env = {"PATH": os.environ.get("PATH", ""), "ALYX_SOCKET": sock, "ALYX_SECRET_FILE": str(tmp_path / "rt.secret")}
    proc = subprocess.Popen(["node", str(ROOT / "runtimes" / "node" / "shim.js")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        client = RuntimeClient(sock, SECRET)
        client.wait_ready(time.monotonic() + 15, lambda: proc.poll() is None)
        init = json.dumps({"code_dir": str(code), "entry": "index.mjs", "function": "chatty"}).encode()
        assert client.request("POST", "/__rt/init", [("Content-Type", "application/json")], init).status == 200
        answer = client.request("GET", "/", [("X-Alyx-Invocation-Id", "call-1")], b"", timeout=30)
        assert answer.status == 200 and answer.body == b"done"
        out, deadline = b"", time.monotonic() + 30
        assert proc.stdout is not None
        while out.count(b"x" * 99 + b"\n") < 3000 and time.monotonic() < deadline:  # now drain the pipe
            out += os.read(proc.stdout.fileno(), 1 << 16)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    call = out.decode().split("\x1eALYX-END init\x1e\n")[-1]
    assert call.count("x" * 99 + "\n") == 3000
    assert call.endswith("x" * 99 + "\n\x1eALYX-END call-1\x1e\n"), "the end mark overtook the call's output"
