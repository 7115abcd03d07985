"""The Alyx image as the README deploys it: docker-compose.yml as written, and `docker run`.

The image is built once per run (`build_app_image`, cached by a hash of its inputs: a rerun with
nothing changed takes about a second). Functions run in sibling containers through the host's
docker.sock; their code and sockets reach them through Alyx's own volume (HostPaths), not through
bind mounts of paths that exist only inside the Alyx container.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.sync.client import connect

from alyx.sandbox.docker_tier import LABEL, docker_problem
from alyx.sandbox.images import APP_ALIASES, BuildError, build_app_image, source_root
from tests.conftest import NOTES_SCHEMA
from tests.harness import free_port

ROOT = source_root()
SECRET = "deploy-test-secret-" + "x" * 32
TIMEOUT = 60.0
SCHEMA = NOTES_SCHEMA
PY_FUNCTION = 'def handler(req, res):\n    return res.json({"message": "Hello from Python!"})\n'
JS_FUNCTION = ('export default async function handler(req, res) {\n'
               '    return res.json({ message: "Hello from Node!" });\n}\n')


def _missing(tool: str) -> None:
    message = f"{tool} is not available (scripts/provision.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None or docker_problem() is not None:
        _missing(f"Docker with the runtime images ({docker_problem()})")
    try:
        build_app_image("auto", echo=lambda line: None)
    except BuildError as exc:
        pytest.fail(str(exc))
    return APP_ALIASES[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "functions").mkdir()
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "alyx.yaml").write_text("functions:\n  sandbox: docker\n")
    (tmp_path / "functions" / "hello.py").write_text(PY_FUNCTION)
    (tmp_path / "functions" / "greet.js").write_text(JS_FUNCTION)
    for path in tmp_path.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp_path.chmod(0o755)
    return tmp_path


def _http(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait_healthy(port: int, container: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
                               capture_output=True, text=True).stdout.strip()
        if state == "healthy":
            return
        time.sleep(0.5)
    logs = subprocess.run(["docker", "logs", "--tail", "40", container], capture_output=True, text=True)
    raise AssertionError(f"{container} not healthy: {state}\n{logs.stdout}{logs.stderr}")


def _sandboxes(alyx_container_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}",
                          "--filter", f"label=alyx.host={alyx_container_id[:12]}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def _exercise(port: int) -> str:
    """Records, both functions (sibling containers), a realtime subscription; returns a record id."""
    status, created = _http(port, "POST", "/api/collections/notes", {"title": "first"})
    assert status in (200, 201), created
    status, listed = _http(port, "GET", "/api/collections/notes")
    assert status == 200 and created["id"] in [item["id"] for item in listed["items"]], listed
    assert _http(port, "GET", "/api/functions/hello") == (200, {"message": "Hello from Python!"})
    assert _http(port, "GET", "/api/functions/greet") == (200, {"message": "Hello from Node!"})
    with connect(f"ws://127.0.0.1:{port}/api/realtime", open_timeout=TIMEOUT, compression=None) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
        ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"collection": "notes"}}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "snapshot"
        _status, live = _http(port, "POST", "/api/collections/notes", {"title": "live"})
        frame = json.loads(ws.recv(timeout=TIMEOUT))
        assert frame["type"] == "delta" and live["id"] in json.dumps(frame["payload"]), frame
    return str(created["id"])


def _compose_file(project: Path, port: int) -> None:
    """The repository's docker-compose.yml (the README's, checked below), host port made free."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert '"8090:8090"' in text
    (project / "docker-compose.yml").write_text(text.replace('"8090:8090"', f'"127.0.0.1:{port}:8090"'))


def test_the_compose_file_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(# docker-compose.yml\n.*?)```", readme, re.S)
    assert blocks, "README shows no docker-compose.yml"
    assert yaml.safe_load(blocks[0]) == yaml.safe_load((ROOT / "docker-compose.yml").read_text())


ANONYMOUS: list[str] = []  # the image's /app/run volumes of compose's containers: `down -v` misses old ones


def _remember_volumes(container: str) -> None:
    out = subprocess.run(["docker", "inspect", "-f", "{{range .Mounts}}{{.Name}} {{.Destination}}\n{{end}}",
                          container], capture_output=True, text=True).stdout
    ANONYMOUS.extend(line.split()[0] for line in out.splitlines() if line.endswith(" /app/run"))


@pytest.fixture
def compose(project: Path, image: str) -> Iterator[tuple[list[str], int]]:
    port = free_port()
    _compose_file(project, port)
    name = f"alyxtest{uuid.uuid4().hex[:8]}"
    command = ["docker-compose", "-p", name]
    env = {**os.environ, "JWT_SECRET": SECRET}
    if shutil.which("docker-compose") is None:
        _missing("docker-compose")
    try:
        yield command, port
    finally:
        subprocess.run([*command, "down", "-v", "-t", "10"], cwd=project, env=env, capture_output=True)
        for volume in ANONYMOUS:
            subprocess.run(["docker", "volume", "rm", volume], capture_output=True)


def test_compose_up_serves_functions_in_sibling_containers_and_keeps_data(
        compose: tuple[list[str], int], project: Path) -> None:
    command, port = compose
    env = {**os.environ, "JWT_SECRET": SECRET}

    def run(*args: str) -> str:
        done = subprocess.run([*command, *args], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("up", "-d")
    container = run("ps", "-q", "alyx").strip()
    _remember_volumes(container)
    _wait_healthy(port, container)
    kept = _exercise(port)
    assert _sandboxes(container), "functions ran, so sandbox containers are warm"
    top = subprocess.run(["docker", "top", container, "-o", "pid,uid,args"], capture_output=True, text=True).stdout
    gunicorns = [line.split()[1] for line in top.splitlines() if "gunicorn" in line and "entrypoint" not in line]
    assert gunicorns and set(gunicorns) == {"10001"}, top  # the server runs as user alyx, not root

    run("down")
    assert _sandboxes(container) == [], "down leaves no sandbox container behind"
    run("up", "-d")
    container = run("ps", "-q", "alyx").strip()
    _remember_volumes(container)
    _wait_healthy(port, container)
    status, record = _http(port, "GET", f"/api/collections/notes/{kept}")
    assert status == 200 and record["title"] == "first", record  # the alyx-data volume kept it
    assert _http(port, "GET", "/api/functions/hello") == (200, {"message": "Hello from Python!"})
    run("down")
    assert _sandboxes(container) == []


def test_docker_run_as_in_the_readme(project: Path, image: str) -> None:
    port = free_port()
    name = f"alyxtest-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    run = ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8090",
           "-v", f"{project}/schema.yaml:/app/schema.yaml:ro", "-v", f"{project}/alyx.yaml:/app/alyx.yaml:ro",
           "-v", f"{project}/functions:/app/functions:ro", "-v", f"{volume}:/app/data",
           "-v", "/var/run/docker.sock:/var/run/docker.sock", "-e", f"JWT_SECRET={SECRET}", image]
    container = subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip()
    try:
        _wait_healthy(port, container)
        _exercise(port)
        subprocess.run(["docker", "stop", "-t", "10", container], capture_output=True, check=True)
        assert _sandboxes(container) == []
    finally:
        subprocess.run(["docker", "rm", "-fv", container], capture_output=True)
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True)


def test_a_missing_jwt_secret_stops_the_container(project: Path, image: str) -> None:
    done = subprocess.run(["docker", "run", "--rm", "-v", f"{project}/schema.yaml:/app/schema.yaml:ro", image],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode != 0 and "Alyx cannot start" in done.stderr + done.stdout
