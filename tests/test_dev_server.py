"""`python -m alyx dev`: serves the project, restarts on schema changes, explains a broken schema."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ROOT, free_port, write_project

SCHEMA_V1 = """
collections:
  - name: notes
    fields: [{name: text, type: string}]
    rules: {list: "true", view: "true", create: "true"}
"""
SCHEMA_V2 = SCHEMA_V1 + """
  - name: tasks
    fields: [{name: done, type: bool, default: false}]
    rules: {list: "true"}
"""


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def test_dev_server_reloads_on_schema_change(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", SCHEMA_V1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "alyx", "--project", str(project), "dev", "--port", str(port)],
                            cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        health = wait_for(lambda: requests.get(url + "/api/health", timeout=1).json())
        assert health["collections"] == ["notes", "users"]
        assert requests.post(url + "/api/collections/notes", json={"text": "kept"}, timeout=5).status_code == 201

        (project / "schema.yaml").write_text(SCHEMA_V2)
        wait_for(lambda: "tasks" in requests.get(url + "/api/health", timeout=1).json()["collections"])
        notes = requests.get(url + "/api/collections/notes", timeout=5).json()
        assert [n["text"] for n in notes["items"]] == ["kept"]

        (project / "schema.yaml").write_text("collections:\n  - name: Bad Name\n")
        broken = wait_for(lambda: (r := requests.get(url + "/api/health", timeout=1)).status_code == 503 and r.json())
        assert broken["error"]["code"] == "config_error"
        assert "invalid collection name 'Bad Name'" in broken["error"]["message"]

        (project / "schema.yaml").write_text(SCHEMA_V2)
        wait_for(lambda: requests.get(url + "/api/health", timeout=1).status_code == 200)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
