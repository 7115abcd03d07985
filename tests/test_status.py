"""/api/health (alyx/blueprints/health.py, alyx/status.py): status and version for anyone; the database,
collections, sandbox tier and runtime images, realtime broker, workers and pending migrations (with the
command to run) for admins; in development a summary for anyone."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx import __version__
from alyx.status import gunicorn_workers
from tests.conftest import BLOG_SCHEMA, TEST_ENV, TEST_SECRET, AppMaker

PRODUCTION = {**TEST_ENV, "ALYX_SERVER_ENVIRONMENT": "production", "ALYX_AUTH_SECRET": TEST_SECRET,
              "ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_SERVER_WORKERS": "3"}


@pytest.fixture
def maker(tmp_path: Path, database_env: dict[str, str]) -> Iterator[AppMaker]:
    made = AppMaker(tmp_path, {**PRODUCTION, **database_env}, test_users=True)
    yield made
    made.close()


def test_anonymous_callers_and_users_see_status_and_version_only(maker: AppMaker) -> None:
    c = maker(BLOG_SCHEMA).test_client()
    for headers in ({}, {"X-Test-User": "user"}):
        r = c.get("/api/health", headers=headers)
        assert r.status_code == 200 and r.json == {"status": "ok", "version": __version__}


def test_admins_see_database_tier_broker_workers_and_no_pending_migration(maker: AppMaker, backend: str) -> None:
    report = maker(BLOG_SCHEMA).test_client().get("/api/health", headers={"X-Test-User": "admin"}).json
    assert report["database"] == ("sqlite" if backend == "sqlite" else "postgresql")
    assert report["collections"] == ["comments", "posts", "users"]
    assert report["functions"] == {"sandbox": "process", "setting": "process", "problems": [], "images": None}
    assert report["realtime"] == {"broker": "none", "url": None}
    assert report["workers"]["configured"] == 3 and report["workers"]["running"] is None  # not under gunicorn
    assert report["migrations"] == {"pending": [], "review": None, "command": None}


def test_a_destructive_step_waiting_is_shown_with_the_command(maker: AppMaker) -> None:
    app = maker(BLOG_SCHEMA)
    svc = app.extensions["alyx"]
    with svc.db.connection():  # another deployment's schema had a collection this one no longer declares
        svc.db.execute('CREATE TABLE "legacy" ("id" VARCHAR(15) PRIMARY KEY)')
        svc.system.managed_collection.create(name="legacy")
    migrations = app.test_client().get("/api/health", headers={"X-Test-User": "admin"}).json["migrations"]
    assert migrations["pending"] == [{"collection": "legacy", "action": "drop_collection", "destructive": True,
                                      "detail": "drop collection 'legacy' and all its records"}]
    assert migrations["command"] == "alyx migrate apply --allow-destructive"
    assert migrations["review"] == "alyx migrate status"


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:6379/0", "redis://:hun@ter2@127.0.0.1:6379/0",
                                 "redis://127.0.0.1:6379/0?db=0&password=hunter2"])
def test_the_broker_url_is_shown_without_its_password(maker: AppMaker, url: str) -> None:
    """Drivers read a password up to the authority's last @, and from ?password= too."""
    app = maker(BLOG_SCHEMA, env={"ALYX_REALTIME_BROKER": url})
    realtime = app.test_client().get("/api/health", headers={"X-Test-User": "admin"}).json["realtime"]
    assert realtime["broker"] == "redis" and "ter2" not in realtime["url"], realtime
    assert "127.0.0.1:6379/0" in realtime["url"]


def test_docker_runtime_images_are_listed_when_functions_run_in_docker(maker: AppMaker) -> None:
    app = maker(BLOG_SCHEMA, env={"ALYX_FUNCTIONS_SANDBOX": "docker"})
    images = app.test_client().get("/api/health", headers={"X-Test-User": "admin"}).json["functions"]["images"]
    assert [i["runtime"] for i in images] == ["python", "node", "go"]
    assert all(i["image"].startswith(f"alyx/runtime-{i['runtime']}:") and isinstance(i["present"], bool)
               for i in images)


def test_development_shows_a_summary_to_anyone(tmp_path: Path) -> None:
    made = AppMaker(tmp_path, TEST_ENV)
    try:
        report = made(BLOG_SCHEMA).test_client().get("/api/health").json
    finally:
        made.close()
    assert set(report) == {"status", "version", "database", "collections", "functions"}
    assert "images" not in report["functions"]


def test_gunicorn_workers_are_counted_from_the_masters_children(tmp_path: Path) -> None:
    import os

    parent = tmp_path / str(os.getppid())
    (parent / "task" / str(os.getppid())).mkdir(parents=True)
    (parent / "cmdline").write_bytes(b"python\0/venv/bin/gunicorn\0-c\0gunicorn.conf.py\0")
    (parent / "task" / str(os.getppid()) / "children").write_text("101 102 103 ")
    assert gunicorn_workers(tmp_path) == 3
    (parent / "cmdline").write_bytes(b"python\0-m\0pytest\0")
    assert gunicorn_workers(tmp_path) is None
    assert gunicorn_workers(tmp_path / "nowhere") is None
