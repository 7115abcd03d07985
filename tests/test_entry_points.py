"""The dev and production entry points start as documented: `flask --app app run` listens on the
project's port, gunicorn starts without gevent's MonkeyPatchWarning."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import BLOG_SCHEMA, ROOT, TEST_ENV, free_port, write_project


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALYX_", "FLASK_"))}
    env.update({**TEST_ENV, **extra})
    return env


def serve_until_healthy(command: list[str], env: dict[str, str], port: int, log: Path, settle: float = 0) -> str:
    """Start `command`, wait for /api/health on `port` (then `settle` seconds), stop it; returns what it printed."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, f"nothing answered on port {port}:\n{log.read_text()}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        time.sleep(settle)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return log.read_text()


def test_flask_run_listens_on_the_projects_port_unless_told_otherwise(tmp_path: Path) -> None:
    configured, from_env, given = free_port(), free_port(), free_port()
    project = write_project(tmp_path / "p", BLOG_SCHEMA, f"server:\n  port: {configured}\n")
    flask = [sys.executable, "-m", "flask", "--app", "app", "run"]
    env = clean_env(ALYX_PROJECT_DIR=str(project))  # .flaskenv gives ALYX_PROJECT_DIR only if unset
    serve_until_healthy(flask, env, configured, tmp_path / "a.log")  # server.port in alyx.yaml
    serve_until_healthy(flask, {**env, "ALYX_SERVER_PORT": str(from_env)}, from_env, tmp_path / "b.log")
    serve_until_healthy([*flask, "--port", str(given)], {**env, "ALYX_SERVER_PORT": str(from_env)}, given,
                        tmp_path / "c.log")


def test_gunicorn_starts_without_monkey_patch_warnings(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", BLOG_SCHEMA)
    port = free_port()
    env = clean_env(ALYX_PROJECT_DIR=str(project), ALYX_SERVER_ENVIRONMENT="production", JWT_SECRET="s" * 64,
                    GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2")
    output = serve_until_healthy([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env, port,
                                 tmp_path / "gunicorn.log", settle=1.0)  # the second worker's start too
    assert output.count("Booting worker") == 2, output
    assert "MonkeyPatchWarning" not in output and "Traceback" not in output, output
