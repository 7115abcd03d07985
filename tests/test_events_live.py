"""Durability on a real server: SIGKILL gunicorn (workers and sandboxes) between a write and its async hook,
and in the middle of a hook; after a restart each hook runs per its attempt policy, never lost, never doubled.
Also the README's webhook answering the sender through gunicorn.
"""
from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from alyx.signatures import sign
from tests.conftest import TEST_SECRET
from tests.harness import LiveServer, eventually
from tests.test_webhooks import README_HANDLER, README_MANIFEST

SCHEMA = """
collections:
  - name: orders
    fields:
      - {name: title, type: string, required: true}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""
MANIFEST = """
runtime: python
timeout: 120
retries: 3
hooks:
  - {type: database, source: orders, action: insert, mode: async}
"""
HOOK = '''
import time
def handler(req, res):
    doc = req.input["document"]
    print("run", doc["title"], "attempt", req.headers.get("alyx-attempt"), flush=True)
    if doc["title"] == "slow" and req.headers.get("alyx-attempt") == "1":
        time.sleep(100)  # the server is killed meanwhile
    return res.json({"seen": doc["id"]})
'''


class Server(LiveServer):
    """gunicorn -k gevent -w 2 in its own session, so that it can be SIGKILLed with all it started."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        super().__init__(project, 2, {"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_EVENTS_POLL_MS": "100", **env},
                         secret=TEST_SECRET, append_log=True, new_session=True)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.kill()


def query(db: Path, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, args).fetchall()


def test_sigkill_between_write_and_hook_and_during_a_hook(tmp_path: Path, servers: list[Server]) -> None:
    project = tmp_path / "project"
    (project / "functions" / "onorder").mkdir(parents=True)
    (project / "schema.yaml").write_text(textwrap.dedent(SCHEMA))
    (project / "functions" / "onorder" / "manifest.yaml").write_text(textwrap.dedent(MANIFEST))
    (project / "functions" / "onorder" / "index.py").write_text(textwrap.dedent(HOOK))
    db = project / "data" / "alyx.db"

    def runs(title: str) -> list[tuple[str, dict]]:
        rows = query(db, "SELECT status, input, error FROM _alyx_executions WHERE function_id = 'onorder' "
                         "ORDER BY started_at")
        return [(status, json.loads(error) if error else None) for status, raw, error in rows
                if json.loads(raw)["document"]["title"] == title]

    # 1. The write commits, the server dies before any worker picks the hook up (runners off).
    first = Server(project, {"ALYX_EVENTS_RUNNER": "off"})
    servers.append(first)
    quick = requests.post(first.url + "/api/collections/orders", json={"title": "quick"}, timeout=10)
    assert quick.status_code == 201, quick.text
    assert query(db, "SELECT status, attempts FROM _alyx_jobs") == [("pending", 0)]
    first.kill()

    # 2. After a restart the queued hook runs, once. Then a hook is killed in the middle of its first attempt.
    second = Server(project, {"ALYX_EVENTS_LOCK_SECONDS": "5"})
    servers.append(second)
    eventually(lambda: runs("quick"), "the queued hook to run after the restart")
    slow = requests.post(second.url + "/api/collections/orders", json={"title": "slow"}, timeout=10)
    assert slow.status_code == 201, slow.text
    eventually(lambda: query(db, "SELECT 1 FROM _alyx_jobs WHERE attempts >= 1 AND id = 2"),
             "the slow hook's first attempt to start")
    state = query(db, "SELECT id, status, attempts, last_error FROM _alyx_jobs")
    assert ("running", 1) in [(status, attempts) for _, status, attempts, _ in state], (state, runs("slow"))
    second.kill()

    # 3. The lost attempt's lock lapses; a new server logs it as crashed and makes attempt 2.
    third = Server(project, {"ALYX_EVENTS_LOCK_SECONDS": "5"})
    servers.append(third)
    eventually(lambda: any(status == "success" for status, _ in runs("slow")), "the second attempt")
    time.sleep(1.0)  # long enough for a wrongly duplicated run to show up in the log below
    assert [status for status, _ in runs("quick")] == ["success"]
    slow_runs = runs("slow")
    assert [status for status, _ in slow_runs] == ["crashed", "success"]
    assert slow_runs[0][1]["code"] == "worker_lost" and slow_runs[0][1]["details"]["attempt"] == 1
    assert sorted(query(db, "SELECT status, attempts FROM _alyx_jobs")) == [("done", 1), ("done", 2)]
    third.kill()


TICK = '''
def handler(req, res):
    return res.json({"tick": req.input})
'''


def test_two_gunicorn_workers_run_each_scheduled_time_once(tmp_path: Path, servers: list[Server]) -> None:
    project = tmp_path / "project"
    (project / "functions" / "tick").mkdir(parents=True)
    (project / "schema.yaml").write_text(textwrap.dedent(SCHEMA))
    (project / "functions" / "tick" / "manifest.yaml").write_text(
        "runtime: python\nschedules:\n  - {name: every2s, type: interval, expression: 2s, config: {input: {n: 1}}}\n")
    (project / "functions" / "tick" / "index.py").write_text(textwrap.dedent(TICK))
    db = project / "data" / "alyx.db"
    server = Server(project, {})
    servers.append(server)

    def scheduled() -> list[str]:
        return [json.loads(p)["scheduled_for"] for (p,) in
                query(db, "SELECT payload FROM _alyx_jobs WHERE trigger_type = 'schedule'")]

    eventually(lambda: len(scheduled()) >= 4, "four scheduled runs", timeout=60)
    times = scheduled()
    assert len(times) == len(set(times))  # no scheduled time queued twice
    holders = query(db, "SELECT holder FROM _alyx_leases WHERE name = 'scheduler'")
    assert len(holders) == 1
    eventually(lambda: query(db, "SELECT count(*) FROM _alyx_executions WHERE trigger_type = 'schedule' "
                               "AND status = 'success'")[0][0] >= 4, "the runs to execute")
    server.kill()


def test_the_readme_webhook_on_a_real_server(tmp_path: Path, servers: list[Server]) -> None:
    """gunicorn -k gevent: the README's webhook answers the sender 200 or 401 itself (sync, the default);
    the same function with ``mode: async`` answers 202 and runs from the queue."""
    project = tmp_path / "project"
    (project / "functions" / "stripe-webhook").mkdir(parents=True)
    (project / "functions" / "queued").mkdir()
    (project / "schema.yaml").write_text(textwrap.dedent(SCHEMA))
    (project / "functions" / "stripe-webhook" / "manifest.yaml").write_text(README_MANIFEST)
    (project / "functions" / "stripe-webhook" / "index.js").write_text(README_HANDLER)
    (project / "functions" / "queued" / "manifest.yaml").write_text(
        README_MANIFEST.replace("name: stripe-webhook", "name: queued").replace("  - type: webhook\n",
                                                                                "  - type: webhook\n    mode: async\n"))
    (project / "functions" / "queued" / "index.js").write_text(README_HANDLER)
    secret = "whsec_live_0123456789"
    server = Server(project, {"STRIPE_WEBHOOK_SECRET": secret})
    servers.append(server)
    body = b'{"type":"charge.succeeded","id":"evt_1"}'
    headers = {"Content-Type": "application/json", "X-Stripe-Signature": sign(body, secret)}
    good = requests.post(server.url + "/api/webhooks/stripe-webhook", data=body, headers=headers, timeout=30)
    assert (good.status_code, good.json()) == (200, {"received": True}), good.text
    bad = requests.post(server.url + "/api/webhooks/stripe-webhook", data=body, timeout=30,
                        headers={**headers, "X-Stripe-Signature": sign(body, "wrong")})
    assert (bad.status_code, bad.json()) == (401, {"error": "the signature does not match the body"}), bad.text
    queued = requests.post(server.url + "/api/webhooks/queued", data=body, headers=headers, timeout=30)
    assert queued.status_code == 202 and queued.json()["verified"] is True, queued.text
    db = project / "data" / "alyx.db"
    rows = eventually(lambda: query(db, "SELECT function_id, trigger_type, status, output FROM _alyx_executions "
                                      "ORDER BY started_at") if len(query(db, "SELECT id FROM _alyx_executions")) == 3
                    else None, "three webhook executions")
    assert [(f, t, s, json.loads(o)["status"]) for f, t, s, o in rows if f == "stripe-webhook"] == [
        ("stripe-webhook", "webhook", "success", 200), ("stripe-webhook", "webhook", "success", 401)]
    assert [(f, s) for f, _, s, _ in rows if f == "queued"] == [("queued", "success")]
    server.kill()
