"""alyx.devserver.dev_app: the real app for a good project; for a broken one, every path answers 503
config_error with the message (the process survives, so the reloader can pick up the fix)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from alyx.devserver import dev_app
from tests.conftest import TEST_ENV, write_project
from tests.helpers import assert_error

SCHEMA = """
collections:
  - name: notes
    fields: [{name: text, type: string}]
    rules: {list: "true", view: "true", create: "true"}
"""


@pytest.fixture(autouse=True)
def dev_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ALYX_DATABASE_URL", raising=False)


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        if "alyx" in app.extensions:
            app.extensions["alyx"].close()


def test_a_good_project_gets_the_real_app(tmp_path: Path, apps: list[Flask]) -> None:
    app = dev_app(write_project(tmp_path / "p", SCHEMA))
    apps.append(app)
    c = app.test_client()
    assert c.get("/api/health").status_code == 200
    assert "notes" in c.get("/api/health").get_json()["collections"]
    assert c.post("/api/collections/notes", json={"text": "hi"}).status_code == 201


def test_a_broken_schema_is_explained_on_every_path(tmp_path: Path, apps: list[Flask],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path / "p", "collections:\n  - name: Bad Name\n")
    app = dev_app(project)
    apps.append(app)
    assert "alyx" not in app.extensions  # no services were built
    printed = capsys.readouterr().out
    assert printed.startswith("Alyx cannot start: ") and "Waiting for schema.yaml / alyx.yaml" in printed
    c = app.test_client()
    for path in ("/", "/api/health", "/api/collections/notes", "/deep/ly/nested"):
        error = assert_error(c.get(path), 503, "config_error")
        assert "invalid collection name 'Bad Name'" in error["message"]
        assert "schema.yaml" in error["message"]


def test_after_the_fix_the_next_build_is_the_real_app(tmp_path: Path, apps: list[Flask]) -> None:
    project = write_project(tmp_path / "p", "collections: [oops\n")
    broken = dev_app(project)
    apps.append(broken)
    assert broken.test_client().get("/api/health").status_code == 503
    write_project(project, SCHEMA)  # what the reloader does next: build again
    fixed = dev_app(project)
    apps.append(fixed)
    assert fixed.test_client().get("/api/health").status_code == 200
