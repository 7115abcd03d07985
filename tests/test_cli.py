"""The `alyx` command line, run as `python -m alyx` in a subprocess: init, migrate status/apply, errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alyx.app import create_app
from alyx.config import load_config
from tests.conftest import ROOT, TEST_ENV, write_project

PUBLIC = '{list: "true", view: "true", create: "true", update: "true", delete: "true"}'


def alyx(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
         input: str | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
    full_env.update({**TEST_ENV, "PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "alyx", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=60, input=input)


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, one message on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("Error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_init_scaffolds_a_working_project(tmp_path):
    result = alyx("init", "blog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "blog"
    assert (project / "alyx.yaml").is_file() and (project / "schema.yaml").is_file()
    assert (project / "functions").is_dir()
    assert "blog" in result.stdout
    # the scaffold is valid: its migrations apply and it serves requests
    status = alyx("--project", str(project), "migrate", "status")
    assert status.returncode == 0 and "create collection 'posts'" in status.stdout, status.stderr
    applied = alyx("migrate", "apply", env={"ALYX_PROJECT_DIR": str(project)})
    assert applied.returncode == 0 and "step(s) applied" in applied.stdout, applied.stderr
    assert (project / "data" / "alyx.db").is_file()
    app = create_app(load_config(project, env=TEST_ENV))
    try:
        assert app.test_client().get("/api/collections/posts").status_code == 200
    finally:
        app.extensions["alyx"].close()
    again = alyx("--project", str(project), "migrate", "apply")
    assert again.returncode == 0 and "Nothing to apply" in again.stdout


def test_init_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    assert_clean_failure(alyx("init", "taken", cwd=tmp_path), "taken", "not empty")
    assert (tmp_path / "taken" / "file.txt").read_text() == "mine"
    assert not (tmp_path / "taken" / "schema.yaml").exists()


def test_migrate_status_and_apply_on_sqlite(tmp_path):
    project = write_project(tmp_path / "p", f"""
        collections:
          - name: notes
            fields:
              - {{name: text, type: string}}
            rules: {PUBLIC}
        """)
    status = alyx("--project", str(project), "migrate", "status")
    assert status.returncode == 0, status.stderr
    assert "Applied steps: 0" in status.stdout and "[safe] notes: create collection 'notes'" in status.stdout
    assert alyx("--project", str(project), "migrate", "apply").returncode == 0
    status = alyx("--project", str(project), "migrate", "status")
    assert "Pending: nothing" in status.stdout and "notes: create collection 'notes'" in status.stdout

    (project / "schema.yaml").write_text(f"collections:\n  - name: other\n    rules: {PUBLIC}\n")
    status = alyx("--project", str(project), "migrate", "status")
    assert status.returncode == 0
    assert "[DESTRUCTIVE] notes: drop collection 'notes'" in status.stdout
    assert "alyx migrate apply --allow-destructive" in status.stdout
    assert_clean_failure(alyx("--project", str(project), "migrate", "apply"),
                         "drop collection 'notes'", "alyx migrate apply --allow-destructive")
    assert "Pending:\n" in alyx("--project", str(project), "migrate", "status").stdout  # nothing was applied
    applied = alyx("--project", str(project), "migrate", "apply", "--allow-destructive")
    assert applied.returncode == 0 and "2 step(s) applied" in applied.stdout, applied.stderr


@pytest.mark.parametrize("command", [["migrate", "status"], ["migrate", "apply"]])
def test_bad_schema_exits_2_with_the_message(tmp_path, command):
    project = write_project(tmp_path / "p", "collections:\n  - name: a\n    fields:\n      - {name: x, type: nope}\n")
    assert_clean_failure(alyx("--project", str(project), *command), "schema.yaml:4", "unknown type 'nope'")


def test_bad_rule_and_bad_config_exit_2(tmp_path):
    project = write_project(tmp_path / "p", "collections:\n  - name: a\n    rules: {list: 'doc.nope == 1'}\n")
    assert_clean_failure(alyx("--project", str(project), "migrate", "status"), "'a'", "'list'", "doc.nope")
    project = write_project(tmp_path / "q", "")
    (project / "alyx.yaml").write_text("server:\n  port: 1\n  port: 2\n")
    assert_clean_failure(alyx("--project", str(project), "migrate", "status"), "alyx.yaml:3", "duplicate key")
    (project / "alyx.yaml").write_text("")
    assert_clean_failure(alyx("--project", str(project), "migrate", "status", env={"ALYX_SERVER_PORT": "abc"}),
                         "ALYX_SERVER_PORT", "server.port", "integer")


def test_unreachable_database_exits_2(tmp_path):
    project = write_project(tmp_path / "p", "")
    result = alyx("--project", str(project), "migrate", "status",
                  env={"ALYX_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"})
    assert_clean_failure(result, "cannot use the database", "127.0.0.1", "port 1")


def test_unique_index_over_duplicates_exits_2(tmp_path):
    schema = f"collections:\n  - name: a\n    fields:\n      - {{name: x, type: string}}\n    rules: {PUBLIC}\n"
    project = write_project(tmp_path / "p", schema)
    app = create_app(load_config(project, env=TEST_ENV))
    try:
        for _ in range(2):
            assert app.test_client().post("/api/collections/a", json={"x": "same"}).status_code == 201
    finally:
        app.extensions["alyx"].close()
    (project / "schema.yaml").write_text(schema.replace("type: string}", "type: string, unique: true}"))
    assert_clean_failure(alyx("--project", str(project), "migrate", "apply"), "uq_a_x", "duplicate")


def test_version_and_help():
    version = alyx("--version")
    assert version.returncode == 0 and version.stdout.startswith("alyx ")
    helped = alyx("--help")
    assert helped.returncode == 0 and all(c in helped.stdout for c in ("init", "dev", "migrate"))


def test_server_entry_point_refuses_a_bad_schema_without_a_traceback(tmp_path):
    project = write_project(tmp_path / "p", "collections:\n  - name: a\n    fields:\n      - {name: x, type: nope}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
    env.update({**TEST_ENV, "PYTHONPATH": str(ROOT), "ALYX_PROJECT_DIR": str(project)})
    result = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Alyx cannot start" in result.stderr and "schema.yaml:4" in result.stderr


USERS_WITH_NAME = """
collections:
  - name: users
    auth: true
    fields:
      - {name: name, type: string, required: true}
      - {name: age, type: int}
"""


def stored_user(project: Path, email: str) -> dict:
    app = create_app(load_config(project, env=TEST_ENV))
    try:
        user = app.extensions["alyx"].auth.user_by_email(email)
    finally:
        app.extensions["alyx"].close()
    assert user is not None
    return user


def test_admin_create_takes_required_user_fields_with_field(tmp_path):
    project = write_project(tmp_path / "p", USERS_WITH_NAME)
    missing = alyx("--project", str(project), "admin", "create", "ada@example.com", "--password-stdin",
                   input="long enough password\n")
    assert_clean_failure(missing, "users requires name", "--field name=VALUE")
    unknown = alyx("--project", str(project), "admin", "create", "ada@example.com", "--password-stdin",
                   "--field", "name=Ada", "--field", "nick=A", input="long enough password\n")
    assert_clean_failure(unknown, "no field nick", "age, name")
    assert_clean_failure(alyx("--project", str(project), "admin", "create", "ada@example.com", "--password-stdin",
                              "--field", "name", input="long enough password\n"), "expected NAME=VALUE")
    made = alyx("--project", str(project), "admin", "create", "ada@example.com", "--password-stdin",
                "--field", "name=Ada Lovelace", "--field", "age=36", input="long enough password\n")
    assert made.returncode == 0 and "Admin ada@example.com ready" in made.stdout, made.stderr
    user = stored_user(project, "ada@example.com")
    assert (user["name"], user["age"], user["role"]) == ("Ada Lovelace", 36, "admin")


def test_admin_create_prompts_for_missing_required_fields_on_a_terminal(tmp_path):
    import pty

    project = write_project(tmp_path / "p", USERS_WITH_NAME)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
    full_env.update({**TEST_ENV, "PYTHONPATH": str(ROOT)})
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "alyx", "--project", str(project), "admin", "create",
                             "grace@example.com", "--password-stdin"], cwd=ROOT, env=full_env, stdin=terminal,
                            stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    os.write(controller, b"long enough password\n")
    seen = b""
    try:
        while b"name:" not in seen:
            seen += os.read(controller, 1024)
        os.write(controller, b"Grace Hopper\n")
        while proc.poll() is None or b"ready" not in seen:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # the terminal closes when the command exits
                break
            if not chunk:
                break
            seen += chunk
    finally:
        proc.wait(timeout=60)
        os.close(controller)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert stored_user(project, "grace@example.com")["name"] == "Grace Hopper"
