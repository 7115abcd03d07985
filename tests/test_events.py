"""Database hooks, webhooks, custom events, outgoing webhooks, retries and dead letters, through the Flask app.

Functions run in the process sandbox tier (the tier does not matter here; tests/test_functions.py
covers the tiers). Waits are bounded polls on content, never timing thresholds.
"""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from alyx.signatures import sign, verify
from tests.conftest import AppMaker
from tests.harness import eventually
from tests.helpers import assert_error

SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: title, type: string, required: true, max: 200}
      - {name: slug, type: string, unique: true}
      - {name: views, type: int, default: 0}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: notes
    fields:
      - {name: text, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""
ECHO = '''
import json
def handler(req, res):
    print(json.dumps({"trigger": req.trigger, "input": req.input}))
    return res.json({"ok": True})
'''
ADMIN_HEADERS = {"X-Test-User": "admin"}

EvApp = Callable[..., Flask]


def manifest(text: str) -> str:
    return textwrap.dedent(text)


@contextmanager
def event_apps(tmp_path: Path, database_env: dict[str, str]) -> Iterator[EvApp]:
    """Make apps whose functions/ holds the given files; X-Test-User: admin|user sets the caller."""
    maker = AppMaker(tmp_path, {"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_SERVER_ENVIRONMENT": "development",
                                "ALYX_EVENTS_POLL_MS": "50", "ALYX_EVENTS_BACKOFF_BASE_MS": "20", **database_env},
                     test_users=True)

    def factory(files: dict[str, str], config: str = "", env: dict[str, str] | None = None) -> Flask:
        return maker(SCHEMA, config, files=files, env=env)

    try:
        yield factory
    finally:
        maker.close()


@pytest.fixture
def ev_app(tmp_path: Path, database_env: dict[str, str]) -> Iterator[EvApp]:
    with event_apps(tmp_path, database_env) as factory:
        yield factory


def executions(app: Flask, **filters: str) -> list[dict]:
    r = app.test_client().get("/api/executions", query_string={"limit": "500", **filters}, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.data
    return r.json["items"]


def jobs(app: Flask, **filters: str) -> list[dict]:
    r = app.test_client().get("/api/jobs", query_string=filters, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.data
    return r.json["items"]


def hook_manifest(source: str = "posts", action: str = "insert", mode: str = "async", extra: str = "") -> str:
    return f"runtime: python\nhooks:\n  - {{type: database, source: {source}, action: {action}, mode: {mode}}}\n{extra}"


# -- async database hooks ------------------------------------------------------------------------
def test_async_hooks_run_after_commit_with_document_and_previous(ev_app: EvApp) -> None:
    app = ev_app({"onpost/manifest.yaml": "runtime: python\nhooks:\n"
                                          "  - {type: database, source: posts, action: [insert, update, delete]}\n",
                  "onpost/index.py": ECHO})
    c = app.test_client()
    created = c.post("/api/collections/posts", json={"title": "Hello", "slug": "hello"})
    assert created.status_code == 201, created.data
    post_id = created.json["id"]
    assert c.patch(f"/api/collections/posts/{post_id}", json={"title": "Hello again"}).status_code == 200
    assert c.delete(f"/api/collections/posts/{post_id}").status_code == 204
    assert c.post("/api/collections/notes", json={"text": "no hook here"}).status_code == 201
    runs = eventually(lambda: len(executions(app, function_id="onpost")) == 3 and executions(app, function_id="onpost"),
                      what="three hook executions")
    by_action = {r["input"]["action"]: r for r in runs}
    assert set(by_action) == {"insert", "update", "delete"}
    assert all(r["trigger_type"] == "database" and r["status"] == "success" for r in runs)
    insert = by_action["insert"]["input"]
    assert insert["collection"] == "posts" and insert["document"]["title"] == "Hello" and "previous" not in insert
    update = by_action["update"]["input"]
    assert update["document"]["title"] == "Hello again" and update["previous"]["title"] == "Hello"
    assert by_action["delete"]["input"]["document"]["id"] == post_id
    assert '"trigger": "database"' in by_action["update"]["logs"]["stdout"]
    assert {j["status"] for j in jobs(app)} == {"done"}


def test_a_rolled_back_write_fires_nothing(ev_app: EvApp) -> None:
    app = ev_app({"onpost/manifest.yaml": hook_manifest(), "onpost/index.py": ECHO})
    c = app.test_client()
    assert c.post("/api/collections/posts", json={"title": "one", "slug": "same"}).status_code == 201
    assert_error(c.post("/api/collections/posts", json={"title": "two", "slug": "same"}), 409, "conflict")
    assert_error(c.post("/api/collections/posts", json={"slug": "x"}), 422, "validation_failed")
    svc = app.extensions["alyx"]
    with svc.db.connection(), pytest.raises(RuntimeError), svc.db.write():  # any write inside a failed transaction
        svc.records.create("posts", {"title": "rolled back", "slug": "rb"})
        raise RuntimeError("abort")
    eventually(lambda: executions(app, function_id="onpost"), what="the committed write's hook")
    assert [j["payload"]["input"]["document"]["title"] for j in jobs(app)] == ["one"]
    assert [r["input"]["document"]["title"] for r in executions(app, function_id="onpost")] == ["one"]


def test_hooks_fire_for_server_side_writes_too(ev_app: EvApp) -> None:
    """The records service is the one write path: a write by another service (not REST) queues the hook too."""
    app = ev_app({"onnote/manifest.yaml": hook_manifest("notes"), "onnote/index.py": ECHO})
    svc = app.extensions["alyx"]
    with svc.db.connection():
        svc.records.create("notes", {"text": "from a service"})
    runs = eventually(lambda: executions(app, function_id="onnote"), what="the hook")
    assert runs[0]["input"]["document"]["text"] == "from a service"


# -- sync hooks ----------------------------------------------------------------------------------
SYNC_GUARD = '''
import time
def handler(req, res):
    doc = req.input["document"]
    if doc.get("title") == "forbidden":
        return res.status(422).json({"error": {"code": "title_refused", "message": "Not that title.",
                                                "details": {"title": ["refused by a hook"]}}})
    if doc.get("title") == "slow":
        time.sleep(5)
    if doc.get("title") == "crash":
        raise ValueError("the hook broke")
    return res.json({"changes": {"slug": doc["title"].lower().replace(" ", "-")}})
'''


def test_sync_hook_can_change_fields_reject_and_time_out(ev_app: EvApp) -> None:
    app = ev_app({"guard/manifest.yaml": hook_manifest(action="[insert, update]", mode="sync"),
                  "guard/index.py": SYNC_GUARD}, env={"ALYX_EVENTS_SYNC_TIMEOUT_SECONDS": "1"})
    c = app.test_client()
    created = c.post("/api/collections/posts", json={"title": "Hello World"})
    assert created.status_code == 201, created.data
    assert created.json["slug"] == "hello-world"  # the hook's change is in the stored record
    post_id = created.json["id"]
    assert c.get(f"/api/collections/posts/{post_id}").json["slug"] == "hello-world"
    updated = c.patch(f"/api/collections/posts/{post_id}", json={"title": "New Title"})
    assert updated.status_code == 200 and updated.json["slug"] == "new-title"
    refused = assert_error(c.post("/api/collections/posts", json={"title": "forbidden"}), 422, "title_refused")
    assert refused["message"] == "Not that title." and refused["details"] == {"title": ["refused by a hook"]}
    assert_error(c.patch(f"/api/collections/posts/{post_id}", json={"title": "forbidden"}), 422, "title_refused")
    timed_out = assert_error(c.post("/api/collections/posts", json={"title": "slow"}), 504, "hook_timeout")
    assert timed_out["details"]["execution_id"]
    crashed = assert_error(c.post("/api/collections/posts", json={"title": "crash"}), 502, "hook_failed")
    assert "traceback" not in json.dumps(crashed)
    titles = [p["title"] for p in c.get("/api/collections/posts").json["items"]]
    assert titles == ["New Title"]  # refused, timed-out and failed writes were never made
    statuses = sorted(r["status"] for r in executions(app, function_id="guard"))
    assert statuses == ["error", "success", "success", "success", "success", "timeout"]
    assert all(r["trigger_type"] == "database" for r in executions(app, function_id="guard"))


def test_sync_hook_changes_are_validated(ev_app: EvApp) -> None:
    bad = 'def handler(req, res):\n    return res.json({"changes": {"views": "many"}})\n'
    app = ev_app({"bad/manifest.yaml": hook_manifest(mode="sync"), "bad/index.py": bad})
    assert_error(app.test_client().post("/api/collections/posts", json={"title": "x"}), 422, "validation_failed")


@pytest.mark.parametrize("changes", ['"slug"', "[1]", "5"])
def test_sync_hook_changes_that_are_not_an_object_are_the_hook_failing(ev_app: EvApp, changes: str) -> None:
    """The hook's fault, as when it raises: 502 hook_failed naming its run, never a 500; nothing written."""
    bad = f'def handler(req, res):\n    return res.json({{"changes": {changes}}})\n'
    app = ev_app({"bad/manifest.yaml": hook_manifest(mode="sync"), "bad/index.py": bad})
    c = app.test_client()
    resp = c.post("/api/collections/posts", json={"title": "x"})
    error = assert_error(resp, 502, "hook_failed")
    assert error["details"]["execution_id"] == resp.headers["X-Alyx-Execution-Id"]
    assert c.get("/api/collections/posts").json["items"] == []


# -- retries and the dead letter ------------------------------------------------------------------
FLAKY = '''
def handler(req, res):
    print("job", req.headers.get("alyx-job-id"), "attempt", req.headers.get("alyx-attempt"))
    raise RuntimeError("always failing")
'''


def test_retries_with_backoff_then_dead_letter_then_admin_retry(ev_app: EvApp) -> None:
    app = ev_app({"flaky/manifest.yaml": hook_manifest(extra="retries: 2\n"), "flaky/index.py": FLAKY})
    c = app.test_client()
    assert c.post("/api/collections/posts", json={"title": "t"}).status_code == 201
    (job,) = eventually(lambda: jobs(app, status="dead"), what="a dead job")
    assert job["attempts"] == 3 and job["max_attempts"] == 3 and job["last_error"]["code"] == "function_error"
    runs = executions(app, function_id="flaky")
    assert sorted(r["status"] for r in runs) == ["dead_letter", "error", "error"]
    assert {r["error"]["details"]["job_id"] for r in runs} == {job["id"]}
    assert sorted(r["error"]["details"]["attempt"] for r in runs) == [1, 2, 3]
    assert sorted(r["logs"]["stdout"] for r in runs) == [f"job {job['id']} attempt {n}\n" for n in (1, 2, 3)]
    assert executions(app, status="dead_letter")[0]["id"] == job["last_execution_id"]
    assert c.post(f"/api/jobs/{job['id']}/retry", headers={"X-Test-User": "user"}).status_code == 403
    assert c.post(f"/api/jobs/{job['id']}/retry").status_code == 401
    (app.config["project"] / "functions" / "flaky" / "index.py").write_text(ECHO)  # the bug is fixed
    retried = c.post(f"/api/jobs/{job['id']}/retry", headers=ADMIN_HEADERS)
    assert retried.status_code == 202 and retried.json["status"] == "pending"
    eventually(lambda: jobs(app, status="done"), what="the retried job to finish")
    assert sorted(r["status"] for r in executions(app, function_id="flaky")) == \
        ["dead_letter", "error", "error", "success"]
    assert_error(c.post(f"/api/jobs/{job['id']}/retry", headers=ADMIN_HEADERS), 409, "conflict")


# -- webhooks ------------------------------------------------------------------------------------
SECRET = "whsec_0123456789"


def webhook_manifest(kind: str = "hmac-sha256", header: str = "X-Signature", required: bool = False,
                     mode: str = "async") -> str:
    """A webhook hook; these tests are about the queue (``mode: async``, 202 + a job)."""
    return manifest(f"""
        runtime: python
        hooks:
          - type: webhook
            mode: {mode}
            verification:
              {{type: {kind}, header: {header}, secret: "${{HOOK_SECRET}}", required: {str(required).lower()}}}
        """)


WEBHOOK_ECHO = '''
import json
def handler(req, res):
    print(json.dumps({"verified": req.input["verified"], "json": req.json}))
    return res.json({"ok": True})
'''


def test_webhook_verified_and_unverified_deliveries(ev_app: EvApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    app = ev_app({"stripe/manifest.yaml": webhook_manifest(), "stripe/index.py": WEBHOOK_ECHO,
                  "plain.py": ECHO})
    c = app.test_client()
    body = b'{"type":"payment.succeeded","amount":42}'
    good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = c.post("/api/webhooks/stripe", data=body, content_type="application/json", headers={"X-Signature": good})
    assert r.status_code == 202 and r.json["verified"] is True and r.json["job_id"]
    r = c.post("/api/webhooks/stripe", data=body, content_type="application/json",
               headers={"X-Signature": "sha256=" + "0" * 64})
    assert r.status_code == 202 and r.json["verified"] is False
    r = c.post("/api/webhooks/stripe", data=body, content_type="application/json")
    assert r.status_code == 202 and "missing" in r.json["verification_error"]
    runs = eventually(lambda: len(executions(app, function_id="stripe")) == 3 and executions(app, function_id="stripe"),
                      what="three webhook runs")
    assert all(r["trigger_type"] == "webhook" and r["status"] == "success" for r in runs)
    verified = sorted((r["input"]["verified"], r["input"]["verification_error"] or "") for r in runs)
    assert verified[0][0] is False and verified[-1] == (True, "")
    assert runs[-1]["input"]["body"] == body.decode() and runs[-1]["input"]["headers"]["x-signature"] == good
    assert '"json": {"type": "payment.succeeded", "amount": 42}' in next(
        r for r in runs if r["input"]["verified"])["logs"]["stdout"]  # req.json is the original body
    assert_error(c.post("/api/webhooks/plain", data=b"{}"), 404, "not_found")  # no webhook hook
    assert_error(c.post("/api/webhooks/nothing", data=b"{}"), 404, "not_found")


def test_webhook_requiring_verification_refuses_before_any_code_runs(ev_app: EvApp,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    app = ev_app({"strict/manifest.yaml": webhook_manifest(header="Stripe-Signature", required=True),
                  "strict/index.py": WEBHOOK_ECHO})
    c = app.test_client()
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    cases = {
        "missing header": {},
        "bad signature": {"Stripe-Signature": f"t={now},v1={'ab' * 32}"},
        "replayed": {"Stripe-Signature": sign(body, SECRET, timestamp=now - 3600)},
        "wrong secret": {"Stripe-Signature": sign(body, "other", timestamp=now)},
    }
    for headers in cases.values():
        assert_error(c.post("/api/webhooks/strict", data=body, headers=headers), 401, "invalid_signature")
    ok = c.post("/api/webhooks/strict", data=body, headers={"Stripe-Signature": sign(body, SECRET)})
    assert ok.status_code == 202 and ok.json["verified"]
    eventually(lambda: [r for r in executions(app, function_id="strict") if r["status"] == "success"],
               what="the verified delivery")
    runs = executions(app, function_id="strict")
    assert sorted(r["status"] for r in runs) == ["denied"] * 4 + ["success"]  # unverified calls are logged
    denied = [r for r in runs if r["status"] == "denied"]
    assert {r["error"]["code"] for r in denied} == {"invalid_signature"}
    assert all(r["logs"]["stdout"] == "" for r in denied)  # no code ran for them
    assert any("tolerance" in r["error"]["message"] for r in denied)


# -- custom events -------------------------------------------------------------------------------
def test_custom_events_reach_subscribed_functions(ev_app: EvApp) -> None:
    app = ev_app({"billing/manifest.yaml": "runtime: python\nhooks:\n  - {type: event, event: 'order.*'}\n",
                  "billing/index.py": ECHO,
                  "audit/manifest.yaml": "runtime: python\nhooks:\n  - {type: event, source: shop, action: paid}\n",
                  "audit/index.py": ECHO})
    c = app.test_client()
    event = {"type": "order.paid", "source": "shop", "action": "paid", "payload": {"order": 7}}
    assert c.post("/api/events", json=event, headers={"X-Test-User": "user"}).status_code == 403
    r = c.post("/api/events", json=event, headers=ADMIN_HEADERS)
    assert r.status_code == 202 and r.json["delivered_to"] == ["audit", "billing"]
    r = c.post("/api/events", json={"type": "user.signup", "source": "web"}, headers=ADMIN_HEADERS)
    assert r.json["delivered_to"] == []
    assert_error(c.post("/api/events", json={"payload": 1}, headers=ADMIN_HEADERS), 400)
    eventually(lambda: len(executions(app, trigger_type="event")) == 2, what="two event runs")
    assert executions(app, function_id="billing")[0]["input"] == event


# -- outgoing webhooks -----------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on 127.0.0.1 recording what it receives; answers `status` (a list is consumed)."""

    def __init__(self, statuses: list[int]) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = statuses
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], Receiver]]:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_outgoing_webhooks_are_signed_and_retried(ev_app: EvApp, receiver) -> None:
    target = receiver([500, 503, 200])
    app = ev_app({}, config=f"""
        webhooks:
          - {{name: crm, url: "{target.url}", secret: "{SECRET}", collections: [posts], actions: [insert, update]}}
        events: {{retries: 3}}
        """)
    c = app.test_client()
    post = c.post("/api/collections/posts", json={"title": "sent"}).json
    c.delete(f"/api/collections/posts/{post['id']}")  # not subscribed: nothing sent
    c.post("/api/collections/notes", json={"text": "other collection"})
    eventually(lambda: jobs(app, status="done"), what="the delivery to succeed")
    assert len(target.received) == 3  # 500, 503, then 200
    for headers, body in target.received:
        assert verify(body, headers["x-alyx-signature"], SECRET).verified
        event = json.loads(body)
        assert event["type"] == "posts.insert" and event["document"]["title"] == "sent"
    assert [h["x-alyx-attempt"] for h, _ in target.received] == ["1", "2", "3"]
    assert len({h["x-alyx-event-id"] for h, _ in target.received}) == 1  # receivers can deduplicate on it
    runs = executions(app, function_id="webhook:crm")
    assert sorted(r["status"] for r in runs) == ["error", "error", "success"]


def test_outgoing_webhook_config_errors_name_the_entry(ev_app: EvApp) -> None:
    from alyx.errors import ConfigError

    with pytest.raises(ConfigError, match=r"webhooks\[0\]: secret is required"):
        ev_app({}, config='webhooks:\n  - {url: "http://127.0.0.1:1/x"}\n')


def test_outgoing_webhook_errors_carry_the_line_and_timeouts_are_durations() -> None:
    from alyx.errors import ConfigError
    from alyx.events import parse_outgoing
    from alyx.yamlfile import load_yaml

    text = 'webhooks:\n  - url: "http://x/a"\n    secret: s\n    timeout_seconds: 500ms\n  - url: ftp://x\n'
    entries = load_yaml(text, "alyx.yaml")["webhooks"]
    with pytest.raises(ConfigError, match=r"^alyx\.yaml:5: webhooks\[1\]: url must be an http\(s\) URL"):
        parse_outgoing(entries, {})
    assert parse_outgoing(entries[:1], {})["webhook0"].timeout_seconds == 0.5


CHAIN = '''
def handler(req, res):
    doc = req.input["document"]
    note = req.alyx.collection("notes").create({"text": "about " + doc["title"]})
    req.alyx.request("POST", "/api/events", {"type": "post.noted", "source": "chain", "payload": {"note": note["id"]}})
    return res.json({"note": note["id"]})
'''


def test_callback_writes_fire_hooks_and_functions_publish_events(ev_app: EvApp) -> None:
    """A hook writes through its API client (req.alyx): that write fires the next hook; the event it publishes
    reaches its subscriber. Each run calls back as its caller: the anonymous writer, then the hook itself."""
    app = ev_app({"chain/manifest.yaml": hook_manifest(), "chain/index.py": CHAIN,
                  "onnote/manifest.yaml": hook_manifest("notes"), "onnote/index.py": ECHO,
                  "listener/manifest.yaml": "runtime: python\nhooks:\n  - {type: event, event: post.noted}\n",
                  "listener/index.py": ECHO})
    c = app.test_client()
    assert c.post("/api/collections/posts", json={"title": "chained"}).status_code == 201
    noted = eventually(lambda: executions(app, function_id="onnote"), what="the hook of the note the hook wrote")
    assert noted[0]["input"]["document"]["text"] == "about chained"
    heard = eventually(lambda: executions(app, function_id="listener"), what="the published event")
    assert heard[0]["input"]["type"] == "post.noted" and heard[0]["input"]["source"] == "chain"
    assert heard[0]["input"]["payload"]["note"] == noted[0]["input"]["document"]["id"]
    assert executions(app, function_id="chain")[0]["status"] == "success"


ECHO_JS = '''
export default async function handler(req, res) {
  console.log(JSON.stringify({ trigger: req.trigger, input: req.input, auth: req.auth, ctx: ctx.auth }));
  return res.json({ ok: true });
}
'''


def test_node_functions_get_the_same_hook_input(ev_app: EvApp) -> None:
    app = ev_app({"onpostjs/manifest.yaml": hook_manifest().replace("python", "node"), "onpostjs/index.js": ECHO_JS})
    made = app.test_client().post("/api/collections/posts", json={"title": "from node"},
                                  headers={"X-Test-User": "user"})
    assert made.status_code == 201
    (run,) = eventually(lambda: executions(app, function_id="onpostjs"), what="the node hook")
    assert run["status"] == "success" and run["trigger_type"] == "database"
    logged = json.loads(run["logs"]["stdout"])
    assert logged["trigger"] == "database" and logged["input"]["document"]["title"] == "from node"
    assert logged["input"]["action"] == "insert" and logged["input"]["collection"] == "posts"
    assert logged["auth"]["id"] == logged["ctx"]["id"] == "user00000000001"  # the writer
