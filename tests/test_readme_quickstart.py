"""The upstream README's quick start, step by step, through the installed `alyx` command.

`alyx init`, the README's schema.yaml verbatim, `alyx dev`, its Python and Node functions, the
database hook, the webhook (good and bad signature answered 200 and 401 by the function), the cron,
interval and one-time schedules, the daily-cleanup example (`deleteMany` with `$lt`) and the
execution log queries. Functions run on the process tier (the quick start's development default
where Docker is absent is the same code path as every other tier).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any

import requests

from tests.harness import eventually
from tests.test_install import PASSWORD, Venv, dev_server, installed  # noqa: F401 - `installed` is a fixture
from tests.test_schema import UPSTREAM_QUICKSTART

README_SCHEMA = UPSTREAM_QUICKSTART.lstrip("\n") + """\
  - name: logs
    fields:
      - {name: message, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""

FILES = {
    "hello.py": 'def handler(req, res):\n    return res.json({"message": "Hello from Python!"})\n',
    "hello-node.js": 'export default async function handler(req, res) {\n'
                     '    return res.json({ message: "Hello from Node!" });\n}\n',
    "on-user-created/manifest.yaml": "name: on-user-created\nruntime: node\nhooks:\n  - type: database\n"
                                     "    source: users\n    action: insert\n    mode: async\n",
    "on-user-created/index.js": "export default async function handler(req, res) {\n"
                                "  const { document, collection, action } = req.input;\n"
                                "  console.log(`welcome ${document.email} (${collection} ${action})`);\n"
                                "  return res.json({ success: true });\n}\n",
    "stripe-webhook/manifest.yaml": "name: stripe-webhook\nruntime: node\nhooks:\n  - type: webhook\n"
                                    "    verification:\n      type: hmac-sha256\n      header: X-Stripe-Signature\n"
                                    "      secret: ${STRIPE_WEBHOOK_SECRET}\n",
    "stripe-webhook/index.js": "export default async function handler(req, res) {\n"
                               "  const { body, verified, verification_error } = req.input;\n"
                               "  if (!verified) {\n    return res.json({ error: verification_error }, 401);\n  }\n"
                               "  const event = JSON.parse(body);\n"
                               "  if (event.type === 'charge.succeeded') {\n    // Handle successful charge\n  }\n"
                               "  return res.json({ received: true });\n}\n",
    "daily-cleanup/manifest.yaml": "name: daily-cleanup\nruntime: node\nschedules:\n  - name: cleanup-old-logs\n"
                                   "    type: cron\n    expression: \"0 2 * * *\"  # Daily at 2 AM\n"
                                   "    timezone: America/New_York\n    config:\n      input:\n"
                                   "        retention_days: 30\n",
    "daily-cleanup/index.js": "export default async function handler(req, res) {\n"
                              "  const { retention_days } = req.input;\n  const cutoff = new Date();\n"
                              "  cutoff.setDate(cutoff.getDate() - retention_days);\n"
                              "  const deleted = await ctx.alyx.collections.logs.deleteMany({\n"
                              "    created_at: { $lt: cutoff }\n  });\n"
                              "  return res.json({ deleted: deleted.count });\n}\n",
    "ticker/index.py": 'def handler(req, res):\n    return res.json({"tick": req.input})\n',
}
SECRET = "whsec_readme"


def project_from_readme(venv: Venv, folder: Path) -> Path:
    created = venv.run("alyx", "init", "myproject", cwd=folder)
    assert created.returncode == 0, created.stderr
    project = folder / "myproject"
    (project / "schema.yaml").write_text(README_SCHEMA)
    with (project / "alyx.yaml").open("a") as config:
        config.write("functions:\n  sandbox: process\n")
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = {**FILES, "ticker/manifest.yaml": (
        "name: ticker\nruntime: python\nschedules:\n"
        "  - {name: every-second, type: interval, expression: 2s, config: {input: {kind: interval}}}\n"
        f"  - {{name: once, type: one_time, expression: \"{soon}\", config: {{input: {{kind: once}}}}}}\n")}
    for name, text in files.items():
        path = project / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return project


def test_the_readme_quick_start_end_to_end(installed: Venv, tmp_path: Path, monkeypatch: Any) -> None:  # noqa: F811
    project = project_from_readme(installed, tmp_path)
    admin = installed.run("alyx", "admin", "create", "admin@example.com", "--password-stdin", "--field",
                          "name=Admin", cwd=project, input=PASSWORD + "\n")
    assert admin.returncode == 0, admin.stdout + admin.stderr
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    with dev_server(installed, project) as url:
        login = requests.post(url + "/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD},
                              timeout=10)
        assert login.status_code == 200, login.text
        admin_auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def executions(**query: str) -> list[dict[str, Any]]:
            r = requests.get(url + "/api/executions", params=query, headers=admin_auth, timeout=10)
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()["items"]
            return items

        # Functions in Python and Node.
        assert requests.get(url + "/api/functions/hello", timeout=60).json() == {"message": "Hello from Python!"}
        assert requests.get(url + "/api/functions/hello-node", timeout=60).json() == {"message": "Hello from Node!"}

        # The database hook: a user signs up (the README's users need a name), on-user-created runs.
        signup = requests.post(url + "/api/auth/register", timeout=10,
                               json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"})
        assert signup.status_code == 201, signup.text
        def welcomed(email: str) -> list[dict[str, Any]]:
            return [e for e in executions(function_id="on-user-created", status="success")
                    if f"welcome {email} (users insert)" in e["logs"]["stdout"]]

        assert eventually(lambda: welcomed("ada@example.com"), "the database hook")[0]["trigger_type"] == "database"
        assert welcomed("admin@example.com")  # the admin made by the CLI before the server ran: queued, then run
        assert executions(trigger_type="database", limit="50")[0]["function_id"] == "on-user-created"

        # The webhook: the function's own answer reaches the sender.
        body = b'{"type": "charge.succeeded"}'
        good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        ok = requests.post(url + "/api/webhooks/stripe-webhook", data=body, timeout=30,
                           headers={"X-Stripe-Signature": good, "Content-Type": "application/json"})
        assert (ok.status_code, ok.json()) == (200, {"received": True}), ok.text
        bad = requests.post(url + "/api/webhooks/stripe-webhook", data=body, timeout=30,
                            headers={"X-Stripe-Signature": "0" * 64, "Content-Type": "application/json"})
        assert bad.status_code == 401 and bad.json()["error"], bad.text

        # Schedules: interval and one-time runs come by themselves; the 2 AM cron runs now on demand.
        eventually(lambda: len(executions(function_id="ticker", trigger_type="schedule")) >= 3, "interval runs")
        eventually(lambda: any(e["input"] == {"kind": "once"}
                             for e in executions(function_id="ticker", trigger_type="schedule", limit="500")),
                 "the one-time run")
        def cron() -> dict[str, Any] | None:
            listed = requests.get(url + "/api/schedules", headers=admin_auth, timeout=10).json()["items"]
            found = next(s for s in listed if s["function"] == "daily-cleanup")
            return found if found["next_run_at"] else None

        planned = eventually(cron, "the cron schedule's next run")
        assert planned["timezone"] == "America/New_York" and planned["expression"] == "0 2 * * *"

        # daily-cleanup deletes logs older than 30 days with deleteMany and $lt.
        for message in ("old", "older", "new"):
            made = requests.post(url + "/api/collections/logs", json={"message": message}, timeout=10)
            assert made.status_code == 201, made.text
        old_ids = [i["id"] for i in requests.get(url + "/api/collections/logs", timeout=10).json()["items"]
                   if i["message"] != "new"]
        backdate = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S")
        with sqlite3.connect(project / "data" / "alyx.db") as db:  # the clock cannot be moved: age two rows
            db.executemany("UPDATE logs SET created_at = ? WHERE id = ?", [(backdate, i) for i in old_ids])
        ran = requests.post(url + "/api/schedules/daily-cleanup/cleanup-old-logs/run", headers=admin_auth, timeout=10)
        assert ran.status_code == 202, ran.text
        cleaned = eventually(lambda: executions(function_id="daily-cleanup", status="success"), "daily-cleanup")
        assert json.loads(cleaned[0]["output"]["body"]) == {"deleted": 2}, cleaned[0]
        left = requests.get(url + "/api/collections/logs", timeout=10).json()["items"]
        assert [i["message"] for i in left] == ["new"]
