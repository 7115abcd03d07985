"""The real entry points: gunicorn (gevent, 2 workers) via wsgi.py, and `flask --app app run`."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import BLOG_SCHEMA, ROOT, LiveServer, free_port, write_project


def test_two_gevent_workers_share_one_sqlite_file(live_server) -> None:
    server = live_server(workers=2)

    def create(i: int) -> int:
        with requests.Session() as session:
            for j in range(10):
                r = session.post(f"{server.url}/api/collections/posts", json={"title": f"p{i}-{j}", "views": j},
                                 timeout=10)
                assert r.status_code == 201, r.text
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(8)))
    page = requests.get(f"{server.url}/api/collections/posts?perPage=500", timeout=10).json()
    assert page["totalItems"] == 80
    assert len({item["id"] for item in page["items"]}) == 80
    assert "Traceback" not in server.log.read_text()


def test_gunicorn_refuses_a_broken_schema_with_one_message(tmp_path: Path) -> None:
    broken = "collections:\n  - name: posts\n    fields:\n      - {name: a, type: nope}\n"
    project = write_project(tmp_path / "broken", broken)
    try:
        LiveServer(project, workers=1)
    except RuntimeError as exc:
        message = str(exc)
    else:
        raise AssertionError("gunicorn started on a broken schema")
    assert "unknown type 'nope'" in message
    assert "schema.yaml:4" in message
    assert "Traceback" not in message


def test_flask_run_serves_the_project(tmp_path: Path) -> None:
    project = write_project(tmp_path / "dev", BLOG_SCHEMA)
    port = free_port()
    env = {**os.environ, "ALYX_PROJECT_DIR": str(project)}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = requests.get(url + "/api/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise AssertionError("flask run did not start")
        assert health.json()["status"] == "ok"
        assert requests.post(url + "/api/collections/posts", json={"title": "x"}, timeout=5).status_code == 201
        assert (project / "data" / "alyx.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_flaskenv_points_at_the_quickstart_example() -> None:
    settings = dict(line.split("=", 1) for line in (ROOT / ".flaskenv").read_text().splitlines()
                    if line and not line.startswith("#"))
    # no FLASK_RUN_PORT pin: `flask run` listens on the project's server.port, 8080 in the quickstart
    assert "FLASK_RUN_PORT" not in settings
    assert "port: 8080" in (ROOT / settings["ALYX_PROJECT_DIR"] / "alyx.yaml").read_text()
    assert (ROOT / settings["ALYX_PROJECT_DIR"] / "schema.yaml").exists()


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is on a new connection; the status, headers and body of the answer."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_requests_gunicorn_cannot_parse_get_the_one_error_shape(live_server) -> None:
    import orjson

    server = live_server(workers=1)
    cases = [  # what gunicorn refuses before the app sees it, and the code each answer carries
        (b"GET /api/collections/posts?filter=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"POST /api/collections/posts HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", 431,
         "headers_too_large"),
    ]
    for request, status, code in cases:
        got, headers, body = raw_exchange(server.url, request)
        assert got == status, body
        assert headers["content-type"] == "application/json"
        error = orjson.loads(body)["error"]
        assert error["code"] == code and error["message"] and error["details"] == {}
    # a filter of several kilobytes still fits the request line (gunicorn's default stopped at 4094)
    long_filter = " || ".join(f'title == "t{i}"' for i in range(200))
    r = requests.get(f"{server.url}/api/collections/posts", params={"filter": long_filter}, timeout=10)
    assert r.status_code == 200, r.text
    assert 4094 < len(r.request.path_url) < 8190
