"""Fixtures that build real things: project folders, SQLite files, PostgreSQL databases, servers."""
from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from alyx.app import create_app
from alyx.config import load_config
from alyx.rules import Principal
from tests.harness import ROOT, free_port
from tests.harness import LiveServer as GunicornServer

__all__ = ["ROOT", "free_port", "LiveServer", "TEST_SECRET", "TEST_ENV", "BLOG_SCHEMA", "ADMIN", "USER",
           "write_project", "build_app", "AppMaker", "shared_app", "empty_tables"]

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


# The callers that tests name with the X-Test-User header (apps built with test_users=True).
ADMIN = Principal("admin0000000001", "admin@example.com", "admin", True)
USER = Principal("user00000000001", "user@example.com", "user", True)


# A public notes collection: the deployment tests (Docker, nginx, cluster) write and list it.
NOTES_SCHEMA = """\
collections:
  - name: notes
    fields:
      - name: title
        type: string
        required: true
    rules:
      create: "true"
      list: "true"
      view: "true"
"""


def write_project(path: Path, schema: str, config: str = "", files: dict[str, str] | None = None) -> Path:
    """A project folder: schema.yaml, alyx.yaml (if `config`), and functions/ with `files` (path -> text)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "schema.yaml").write_text(textwrap.dedent(schema))
    if config:
        (path / "alyx.yaml").write_text(textwrap.dedent(config))
    (path / "functions").mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        target = path / "functions" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return path


TEST_TOKEN = "alyx-test-user:"


def install_test_users(app: Flask, person: Callable[[str], Principal]) -> None:
    """``X-Test-User: <who>`` makes a request run as ``person(who)``, the way a signed-in client's does:
    the header becomes a bearer token that the app's auth service (wrapped here, for tests only) turns
    into that principal. So such requests take every path a real token takes, the fast CRUD dispatch
    (alyx/blueprints/fast_crud.py) included."""
    auth = app.extensions["alyx"].auth
    authenticate = auth.authenticate

    def test_authenticate(token: object, max_age: float | None = None) -> tuple[Principal, str]:
        if isinstance(token, str) and token.startswith(TEST_TOKEN):
            return person(token[len(TEST_TOKEN):]), "test-session"
        return authenticate(token, max_age)

    auth.authenticate = test_authenticate
    inner = app.wsgi_app

    def with_test_users(environ: dict[str, Any], start_response: Any) -> Any:
        who = environ.get("HTTP_X_TEST_USER")
        if who:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {TEST_TOKEN}{who}"
        return inner(environ, start_response)

    app.wsgi_app = with_test_users  # type: ignore[method-assign]


def build_app(project: Path, env: dict[str, str], *, test_users: bool = False) -> Flask:
    """The one way tests build an app: create_app on `project` with exactly `env`, in testing mode.

    `app.config["project"]` is the folder; with `test_users` the header `X-Test-User: admin|user`
    makes the request run as ADMIN or USER.
    """
    app = create_app(load_config(project, env=env))
    app.testing = True
    app.config["project"] = project
    if test_users:
        install_test_users(app, lambda who: ADMIN if who == "admin" else USER)
    return app


class AppMaker:
    """Builds apps in project folders under `root` (project0, project1, ... unless told) with a base
    environment, and closes them all at the end (`close()`)."""

    def __init__(self, root: Path, env: dict[str, str], *, test_users: bool = False) -> None:
        self.root = root
        self.env = env
        self.test_users = test_users
        self.apps: list[Flask] = []

    def __call__(self, schema: str = "collections: []\n", config: str = "", *, files: dict[str, str] | None = None,
                 env: dict[str, str] | None = None, project: Path | None = None) -> Flask:
        folder = write_project(project or self.root / f"project{len(self.apps)}", schema, config, files)
        app = build_app(folder, {**self.env, **(env or {})}, test_users=self.test_users)
        self.apps.append(app)
        return app

    def close(self) -> None:
        for app in self.apps:
            app.extensions["alyx"].close()
        self.apps.clear()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the PostgreSQL databases made ahead for tests that never came."""
    from tests.helpers import close_databases

    close_databases()


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
    maker = AppMaker(tmp_path, {**TEST_ENV, **database_env})

    def factory(schema: str = BLOG_SCHEMA, config: str = "", project: Path | None = None,
                env: dict[str, str] | None = None) -> Flask:
        return maker(schema, config, env=env, project=project or tmp_path / "project")

    yield factory
    maker.close()


@contextlib.contextmanager
def shared_app(backend: str, folder: Path, schema: str = BLOG_SCHEMA, config: str = "",
               env: dict[str, str] | None = None) -> Iterator[Flask]:
    """One app (and on PostgreSQL one database) for a whole module: the pattern of
    test_collections_api.py. Pair it with `empty_tables(app)` before each test."""
    from tests.helpers import pg_database

    with contextlib.ExitStack() as stack:
        base = dict(TEST_ENV)
        if backend == "postgres":
            base["ALYX_DATABASE_URL"] = stack.enter_context(pg_database())
        maker = AppMaker(folder, base)
        stack.callback(maker.close)
        yield maker(schema, config, env=env)


# Alyx's record of what it migrated: kept, so that the shared app's schema stays what it applied.
KEPT_TABLES = ("_alyx_migrations", "_alyx_collections")


def empty_tables(app: Flask) -> None:
    """Delete every row of every table but KEPT_TABLES: records, users, sessions, login attempts,
    jobs, the change feed, leases — a shared app then looks like a fresh one to the next test."""
    db = app.extensions["alyx"].db
    with db.connection():
        database = db.peewee
        tables = [t for t in database.get_tables() if t not in KEPT_TABLES]
        if not tables:
            return
        if db.is_sqlite:
            database.execute_sql("PRAGMA foreign_keys = OFF")
            try:
                with database.atomic():
                    for table in tables:
                        database.execute_sql(f'DELETE FROM "{table}"')
            finally:
                database.execute_sql("PRAGMA foreign_keys = ON")
        else:
            database.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


@pytest.fixture
def client(make_app: AppFactory):
    return make_app().test_client()


class LiveServer(GunicornServer):
    """A real `gunicorn -k gevent` server on a free port, for HTTP, WebSocket and fuzz tests (TEST_SECRET)."""

    def __init__(self, project: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        super().__init__(project, workers, env, secret=TEST_SECRET)


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
