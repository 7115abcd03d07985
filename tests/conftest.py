"""Fixtures that build real things: project folders, SQLite files, PostgreSQL databases, servers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from alyx.app import create_app
from alyx.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("ALYX_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")

TEST_SECRET = "test-secret-" + "x" * 40
# Tests run as development (a signing key is generated in the project's data folder) with a cheaper
# (still real) argon2id, so that a suite with hundreds of logins stays fast.
TEST_ENV = {"ALYX_SERVER_ENVIRONMENT": "development", "ALYX_AUTH_ARGON2_TIME_COST": "1",
            "ALYX_AUTH_ARGON2_MEMORY_KIB": "8192", "ALYX_AUTH_ARGON2_PARALLELISM": "1"}

BLOG_SCHEMA = """
collections:
  - name: users
    auth: true
    fields:
      - {name: name, type: string, max: 100}
  - name: posts
    fields:
      - {name: title, type: string, required: true, max: 200}
      - {name: body, type: text}
      - {name: status, type: select, values: [draft, published], default: draft}
      - {name: author, type: relation, collection: users, on_delete: cascade}
      - {name: tags, type: json}
      - {name: views, type: int, default: 0, min: 0, index: true}
      - {name: score, type: float}
      - {name: featured, type: bool, default: false}
      - {name: published_at, type: datetime}
      - {name: day, type: date}
      - {name: contact, type: email}
      - {name: link, type: url}
      - {name: ref, type: uuid}
      - {name: slug, type: string, unique: true, pattern: "^[a-z0-9-]+$"}
    indexes:
      - {fields: [author, status]}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: comments
    fields:
      - {name: post, type: relation, collection: posts, on_delete: cascade, required: true}
      - {name: text, type: string, required: true}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""


def write_project(path: Path, schema: str, config: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "schema.yaml").write_text(textwrap.dedent(schema))
    if config:
        (path / "alyx.yaml").write_text(textwrap.dedent(config))
    (path / "functions").mkdir(exist_ok=True)
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards (fails if PostgreSQL is down)."""
    from tests.helpers import pg_database

    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment selecting the database for the current backend parameter."""
    if backend == "postgres":
        return {"ALYX_DATABASE_URL": request.getfixturevalue("pg_url")}
    return {}


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path, database_env: dict[str, str]) -> Iterator[AppFactory]:
    """Build an app for a schema in a temporary project on the current backend."""
    apps: list[Flask] = []

    def factory(schema: str = BLOG_SCHEMA, config: str = "", project: Path | None = None,
                env: dict[str, str] | None = None) -> Flask:
        folder = write_project(project or tmp_path / "project", schema, config)
        app = create_app(load_config(folder, env={**TEST_ENV, **database_env, **(env or {})}))
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["alyx"].close()


@pytest.fixture
def client(make_app: AppFactory):
    return make_app().test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real `gunicorn -k gevent` server on a free port, for HTTP, WebSocket and fuzz tests."""

    def __init__(self, project: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project / "gunicorn.log"
        full_env = {**os.environ, "ALYX_PROJECT_DIR": str(project), "ALYX_AUTH_SECRET": TEST_SECRET, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", str(workers),
             "-b", f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=ROOT, env=full_env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/api/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(schema: str = BLOG_SCHEMA, workers: int = 2, env: dict[str, str] | None = None) -> LiveServer:
        project = write_project(tmp_path / f"live{len(servers)}", schema)
        server = LiveServer(project, workers, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
