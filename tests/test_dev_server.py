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


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def descendants_of(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_parent_only_supervises_and_sigterm_removes_every_sandbox(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", SCHEMA_V1, "functions:\n  sandbox: process\n  warm_pool: 2\n")
    (project / "functions" / "hello.py").write_text('def handler(req, res):\n    return res.json({"hi": 1})\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "alyx", "--project", str(project), "dev", "--port", str(port)],
                                cwd=ROOT, env={**os.environ}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: requests.get(url + "/api/health", timeout=1).status_code == 200)
        assert requests.get(url + "/api/functions/hello", timeout=60).json() == {"hi": 1}
        [child] = children_of(proc.pid)  # the parent built no app: no sandbox, no job loop of its own
        sandboxes = wait_for(lambda: [p for p in descendants_of(child) if "shim" in Path(f"/proc/{p}/cmdline")
                                      .read_bytes().decode(errors="replace")])
        assert len(sandboxes) >= 1

        (project / "schema.yaml").write_text(SCHEMA_V2)  # a reload: the new child serves, the old one is gone
        wait_for(lambda: "tasks" in requests.get(url + "/api/health", timeout=1).json()["collections"])
        assert not alive(child) and not any(alive(p) for p in sandboxes)
        [child] = children_of(proc.pid)
        assert requests.get(url + "/api/functions/hello", timeout=60).json() == {"hi": 1}
        sandboxes = wait_for(lambda: [p for p in descendants_of(child) if "shim" in Path(f"/proc/{p}/cmdline")
                                      .read_bytes().decode(errors="replace")])

        proc.send_signal(15)  # to the parent only, as a process manager does
        assert proc.wait(timeout=30) == 0, log.read_text()
        wait_for(lambda: not alive(child) and not any(alive(p) for p in sandboxes), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("Alyx dev server on") == 1, text
