"""Hostile input against functions and their triggers (issue 15): slots, paths, triggers, bodies, tiers."""
from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from alyx.sandbox import tier_problems
from tests.conftest import AppMaker

SECRET = "s" * 40

PATH_PY = '''
def handler(req, res):
    return res.json({"path": req.path})
'''
PATH_JS = '''
module.exports = async function (req, res) { return res.json({ path: req.path }); };
'''

FnApp = Callable[..., Flask]


@pytest.fixture
def fn_app(tmp_path: Path) -> Iterator[FnApp]:
    """An app (SQLite, process tier unless told) whose functions/ holds the given files."""
    maker = AppMaker(tmp_path, {"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_AUTH_SECRET": SECRET,
                                "ALYX_FUNCTIONS_IDLE_TTL": "600"}, test_users=True)

    def factory(files: dict[str, str], config: str = "", env: dict[str, str] | None = None,
                schema: str = "collections: []\n") -> Flask:
        return maker(schema, config, files={k: textwrap.dedent(v) for k, v in files.items()}, env=env)

    yield factory
    maker.close()


def executions(app: Flask, **filters: str) -> list[dict]:
    response = app.test_client().get("/api/executions", query_string=filters, headers={"X-Test-User": "admin"})
    assert response.status_code == 200, response.data
    return response.json["items"]


# -- 1: a bad request path never costs a slot or a sandbox -------------------------------------------------------
@pytest.mark.parametrize("tier", ["process", "bwrap", "docker"])
@pytest.mark.parametrize("ext,source", [("py", PATH_PY), ("js", PATH_JS)], ids=["python", "node"])
def test_odd_paths_reach_the_function_decoded_once_and_cost_nothing(fn_app: FnApp, ext: str, source: str,
                                                                    tier: str) -> None:
    problem = tier_problems(tier)
    if problem:
        pytest.fail(f"sandbox tier {tier} cannot run here: {problem} (run scripts/provision.sh)")
    app = fn_app({"fn/index." + ext: source, "fn/manifest.yaml": "max_instances: 1\ntimeout: 10\n"},
                 env={"ALYX_FUNCTIONS_SANDBOX": tier})
    c = app.test_client()
    for _ in range(4):  # more than max_instances: a leaked slot would make the later calls wait and 504
        r = c.get("/api/functions/fn/%C3%A9")
        assert r.status_code == 200, r.data
        assert r.json == {"path": "/api/functions/fn/\u00e9"}
    spaced = c.get("/api/functions/fn/a%20b")
    assert spaced.status_code == 200, spaced.data
    assert spaced.json == {"path": "/api/functions/fn/a b"}
    assert c.get("/api/functions/fn/100%25/x%3Fy").json == {"path": "/api/functions/fn/100%/x?y"}
    assert c.get("/api/functions/fn/plain?q=%C3%A9").json == {"path": "/api/functions/fn/plain"}
    sandboxes = {run["sandbox"] for run in executions(app, function_id="fn")}
    assert len(sandboxes) == 1  # one warm sandbox served every call: none was thrown away


def test_an_exception_on_the_invoke_path_releases_the_slot(fn_app: FnApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from alyx.sandbox.protocol import RuntimeClient

    app = fn_app({"fn/index.py": PATH_PY, "fn/manifest.yaml": "max_instances: 1\ntimeout: 2\n"})
    c = app.test_client()
    assert c.get("/api/functions/fn").status_code == 200
    real = RuntimeClient.request

    def broken(self: RuntimeClient, method: str, target: str, *args: object, **kwargs: object) -> object:
        if target.endswith("/boom"):
            raise ValueError("something unexpected on the invoke path")
        return real(self, method, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RuntimeClient, "request", broken)
    for _ in range(3):
        assert c.get("/api/functions/fn/boom").status_code == 500
    r = c.get("/api/functions/fn/ok")
    assert r.status_code == 200, r.data


# -- 5: a function with triggers is not a public function unless its manifest says so ----------------------------
HOOKED = {
    "signed/manifest.yaml": """
        hooks:
          - type: webhook
            verification: {type: hmac-sha256, header: X-Sig, secret: whsec, required: true}
        env: {API_KEY: secret-value}
        """,
    "ondb/manifest.yaml": "hooks:\n  - {type: database, source: notes, action: insert}\n",
    "onevent/manifest.yaml": "hooks:\n  - {type: event, event: order.*}\n",
    "nightly/manifest.yaml": "schedules:\n  - {name: n, type: cron, expression: '0 3 * * *'}\n",
    "served/manifest.yaml": "http: true\nhooks:\n  - {type: event, event: order.*}\n",
    "plain/manifest.yaml": "timeout: 5\n",
}
ENV_PY = '''
import os
def handler(req, res):
    return res.json({"key": os.environ.get("API_KEY"), "trigger": req.trigger})
'''
NOTES = "collections:\n  - name: notes\n    fields:\n      - {name: text, type: string}\n"


def test_functions_with_triggers_are_not_served_over_http(fn_app: FnApp) -> None:
    files = dict(HOOKED)
    for name in ("signed", "ondb", "onevent", "nightly", "served", "plain"):
        files[f"{name}/index.py"] = ENV_PY
    app = fn_app(files, schema=NOTES)
    c = app.test_client()
    for name in ("signed", "ondb", "onevent", "nightly"):
        for method in ("GET", "POST"):
            r = c.open(f"/api/functions/{name}", method=method, headers={"X-Test-User": "admin"})
            assert r.status_code == 404, (name, r.data)
            assert r.json["error"]["code"] == "not_found" and "http: true" in r.json["error"]["message"]
        assert c.post(f"/api/functions/{name}/sub/path").status_code == 404
    assert b"secret-value" not in c.post("/api/functions/signed").data
    assert c.post("/api/functions/served").json == {"key": None, "trigger": "http"}
    assert c.post("/api/functions/plain").json == {"key": None, "trigger": "http"}
    # the webhook itself still runs (unsigned: refused by its required verification)
    assert c.post("/api/webhooks/signed", data=b"{}").status_code == 401


def test_the_http_key_is_checked(fn_app: FnApp) -> None:
    app = fn_app({"bad/manifest.yaml": "http: yes please\n", "bad/index.py": ENV_PY})
    r = app.test_client().get("/api/functions/bad")
    assert r.status_code == 503 and "manifest.yaml:1: http: expected true or false" in r.json["error"]["message"]


# -- 11: past server.max_body_bytes every path answers 413, chunked or not -----------------------------------------
LEN_PY = '''
def handler(req, res):
    return res.json({"length": len(req.raw_body)})
'''
WEBHOOK_LEN = "hooks:\n  - {type: webhook}\n"


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_bodies_past_the_limit_answer_413_chunked_or_not(live_server, tmp_path: Path) -> None:
    import requests

    functions = tmp_path / "live0" / "functions"
    (functions / "hook").mkdir(parents=True)
    (functions / "size.py").write_text(LEN_PY)
    (functions / "hook" / "index.py").write_text(LEN_PY)
    (functions / "hook" / "manifest.yaml").write_text(WEBHOOK_LEN)
    server = live_server(schema=NOTES, workers=1, env={"ALYX_FUNCTIONS_SANDBOX": "process",
                                                       "ALYX_SERVER_MAX_BODY_BYTES": "10000"})
    url = server.url
    fits, past = b"x" * 10000, b"x" * 10001
    for path in ("/api/functions/size", "/api/webhooks/hook"):
        assert requests.post(url + path, data=fits, timeout=30).json() == {"length": 10000}
        assert requests.post(url + path, data=_chunks(fits), timeout=30).json() == {"length": 10000}
        for body in (past, _chunks(past), _chunks(b"x" * 3_000_000, 65536)):
            r = requests.post(url + path, data=body, timeout=30)
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "too_large"
    record = b'{"text": "' + b"y" * 10000 + b'"}'
    r = requests.post(url + "/api/collections/notes", data=_chunks(record), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:200])


# -- 14: outside development, auto never falls back to the unisolated process tier --------------------------------
def _no_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    import alyx.sandbox

    real = alyx.sandbox.tier_problems
    monkeypatch.setattr("alyx.sandbox._detected", {})
    monkeypatch.setattr("alyx.sandbox.tier_problems",
                        lambda name: real(name) if name == "process" else f"no {name} in this test")


def test_auto_refuses_the_process_tier_in_production(fn_app: FnApp, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_isolation(monkeypatch)
    app = fn_app({"hello.py": PATH_PY}, env={"ALYX_FUNCTIONS_SANDBOX": "auto", "ALYX_SERVER_ENVIRONMENT": "production"})
    c = app.test_client()
    r = c.get("/api/functions/hello")
    assert r.status_code == 503, r.data
    assert r.json["error"]["code"] == "sandbox_unavailable"
    assert "functions.sandbox: process" in r.json["error"]["message"]
    tier = c.get("/api/health", headers={"X-Test-User": "admin"}).json["functions"]["sandbox"]
    assert tier.startswith("unavailable:") and "process" in tier


def test_auto_falls_back_in_development_and_process_can_be_chosen(fn_app: FnApp,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _no_isolation(monkeypatch)
    dev = fn_app({"hello.py": PATH_PY},
                 env={"ALYX_FUNCTIONS_SANDBOX": "auto", "ALYX_SERVER_ENVIRONMENT": "development"})
    r = dev.test_client().get("/api/functions/hello")
    assert r.status_code == 200, r.data
    prod = fn_app({"hello.py": PATH_PY}, env={"ALYX_FUNCTIONS_SANDBOX": "process",
                                              "ALYX_SERVER_ENVIRONMENT": "production"})
    assert prod.test_client().get("/api/functions/hello").status_code == 200
    health = prod.test_client().get("/api/health", headers={"X-Test-User": "admin"}).json
    assert health["functions"]["sandbox"] == "process"


# -- 6: a timestamped webhook takes only its scheme, and each (t, signature) once, across workers ----------------
STAMPED = """
hooks:
  - type: webhook
    verification: {type: hmac-sha256, header: Stripe-Signature, secret: whsec, required: true,
                   tolerance_seconds: 300}
"""
VERIFIED_PY = '''
def handler(req, res):
    return res.json({"verified": req.input["verified"], "body": req.input["body"]})
'''


def test_stripe_style_replays_and_downgrades_are_refused(fn_app: FnApp, tmp_path: Path) -> None:
    import time

    from alyx.signatures import sign

    files = {"stripe/manifest.yaml": STAMPED, "stripe/index.py": VERIFIED_PY}
    first = fn_app(files)
    # both workers on one database: the second app is built in the first one's project
    project = first.config["project"]
    second = AppMaker(tmp_path / "w2", {"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_AUTH_SECRET": SECRET})(
        "collections: []\n", files={k: textwrap.dedent(v) for k, v in files.items()}, project=project)
    try:
        body = b'{"type": "charge.succeeded"}'
        now = int(time.time())
        header = sign(body, "whsec", timestamp=now)
        ok = first.test_client().post("/api/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
        assert ok.status_code == 200 and ok.json["verified"] is True, ok.data
        for app in (first, second):  # the exact replay, on this worker and on another
            again = app.test_client().post("/api/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
            assert again.status_code == 401 and "replay" in again.json["error"]["message"], again.data
        bare = header.split("v1=")[1]
        forged = first.test_client().post("/api/webhooks/stripe", data=f"{now}.".encode() + body,
                                          headers={"Stripe-Signature": bare})
        assert forged.status_code == 401, forged.data
        huge = first.test_client().post("/api/webhooks/stripe", data=body,
                                        headers={"Stripe-Signature": f"t={'9' * 400},v1={bare}"})
        assert huge.status_code == 401, huge.data
        fresh = sign(body, "whsec", timestamp=now + 1)  # a new delivery of the same body is not a replay
        assert second.test_client().post("/api/webhooks/stripe", data=body,
                                         headers={"Stripe-Signature": fresh}).status_code == 200
    finally:
        second.extensions["alyx"].close()


# -- 12: webhook bodies reach the function byte for byte ------------------------------------------------------------
RAW_PY = '''
import base64, hashlib
def handler(req, res):
    print(hashlib.sha256(req.raw_body).hexdigest())
    decoded = req.input["body"]
    if req.input.get("body_encoding") == "base64":
        decoded = base64.b64decode(decoded)
    else:
        decoded = decoded.encode()
    return res.json({"sha": hashlib.sha256(req.raw_body).hexdigest(), "input_sha": hashlib.sha256(decoded).hexdigest(),
                     "encoding": req.input.get("body_encoding")})
'''


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_webhook_bodies_that_are_not_utf8_arrive_unaltered(fn_app: FnApp, mode: str) -> None:
    import hashlib
    import time

    app = fn_app({"raw/manifest.yaml": f"hooks:\n  - {{type: webhook, mode: {mode}}}\n", "raw/index.py": RAW_PY},
                 env={"ALYX_EVENTS_POLL_MS": "50"})
    c = app.test_client()
    for body in (b"\xff\xfe caf\xe9 \x00\x80", "café ✓".encode()):
        sha = hashlib.sha256(body).hexdigest()
        r = c.post("/api/webhooks/raw", data=body, content_type="application/octet-stream")
        if mode == "sync":
            assert r.status_code == 200, r.data
            assert r.json["sha"] == sha and r.json["input_sha"] == sha
            continue
        assert r.status_code == 202, r.data
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            app.extensions["alyx"].events.run_due_jobs()
            runs = [run for run in executions(app, function_id="raw") if sha in run["logs"]["stdout"]]
            if runs:
                break
            time.sleep(0.05)
        assert runs and runs[0]["status"] == "success", executions(app, function_id="raw")


# -- 13: a trigger runs as its caller (writer, publisher; anonymous: webhooks, schedules) unless run_as: system --
PROBE_PY = '''
def handler(req, res):
    try:
        req.alyx.request("GET", "/api/functions")
        status = 200
    except Exception as exc:
        status = getattr(exc, "status", 0)
    print("admin-api", status)
    return res.json({"status": status})
'''
PUBLISH_PY = '''
def handler(req, res):
    return res.json(req.alyx.request("POST", "/api/events", {"type": "probe.go"}))
'''


def _probe_runs(app: Flask, name: str, count: int) -> list[str]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        app.extensions["alyx"].events.run_due_jobs()
        runs = [r["logs"]["stdout"] for r in executions(app, function_id=name)]
        if len(runs) >= count:
            return runs
        time.sleep(0.05)
    raise AssertionError(f"{name}: {executions(app, function_id=name)}")


def test_triggers_run_as_their_caller_not_as_admin(fn_app: FnApp) -> None:
    app = fn_app({
        "hook/manifest.yaml": "hooks:\n  - {type: webhook}\n", "hook/index.py": PROBE_PY,
        "trusted/manifest.yaml": "run_as: system\nhooks:\n  - {type: webhook}\n", "trusted/index.py": PROBE_PY,
        "listener/manifest.yaml": "hooks:\n  - {type: event, event: probe.*}\n", "listener/index.py": PROBE_PY,
        "pub.py": PUBLISH_PY,
    })
    c = app.test_client()
    assert c.post("/api/webhooks/hook", data=b"{}").json == {"status": 401}  # unverified sender: anonymous
    assert c.post("/api/webhooks/trusted", data=b"{}").json == {"status": 200}  # the manifest opted in
    assert c.post("/api/functions/pub").json == {"delivered_to": ["listener"]}  # an anonymous publisher
    assert _probe_runs(app, "listener", 1)[0].startswith("admin-api 401")
    assert c.post("/api/events", json={"type": "probe.admin"}, headers={"X-Test-User": "admin"}).status_code == 202
    assert _probe_runs(app, "listener", 2)[0].startswith("admin-api 200")  # an admin publisher: admin
    bad = fn_app({"x/manifest.yaml": "run_as: root\n", "x/index.py": PROBE_PY}).test_client().get("/api/functions/x")
    assert bad.status_code == 503 and "run_as" in bad.json["error"]["message"]


VAULT_SCHEMA = """
collections:
  - name: inbox
    fields:
      - {name: text, type: string}
    rules: {create: "true", list: "true", view: "true"}
  - name: vault
    fields:
      - {name: secret, type: string}
"""  # vault has no rules: admins only
WHO_PY = '''
import json
def handler(req, res):
    text = (req.input.get("document") or req.input)["text"]
    vault = req.alyx.collections.vault.list()["totalItems"]
    print("who", json.dumps({"text": text, "auth": req.auth and req.auth["id"], "ctx": ctx.auth and ctx.auth["id"],
                             "vault": vault}))
    return res.json({})
'''


def _who(app: Flask, name: str, count: int) -> dict[str, dict[str, object]]:
    """What each run of ``name`` saw, by the text it ran for: req.auth and ctx.auth (ids), admin-only rows."""
    import json

    runs = _probe_runs(app, name, count)
    seen = [json.loads(line.split(" ", 1)[1]) for out in runs for line in out.splitlines() if line.startswith("who ")]
    return {entry.pop("text"): entry for entry in seen}


def test_database_hooks_run_as_the_writer(fn_app: FnApp) -> None:
    hook = "hooks:\n  - {{type: database, source: inbox, action: insert, mode: {mode}}}\n"
    app = fn_app({"later/manifest.yaml": hook.format(mode="async"), "later/index.py": WHO_PY,
                  "now/manifest.yaml": hook.format(mode="sync"), "now/index.py": WHO_PY,
                  "trusted/manifest.yaml": "run_as: system\n" + hook.format(mode="async"), "trusted/index.py": WHO_PY},
                 schema=VAULT_SCHEMA)
    c = app.test_client()
    assert c.post("/api/collections/vault", json={"secret": "s"}, headers={"X-Test-User": "admin"}).status_code == 201
    for text, who in (("anonymous", None), ("user", "user"), ("admin", "admin")):
        headers = {"X-Test-User": who} if who else {}
        assert c.post("/api/collections/inbox", json={"text": text}, headers=headers).status_code == 201
    user, admin = "user00000000001", "admin0000000001"
    for name in ("later", "now"):  # async (a queued job keeps its writer) and sync (a guard of the write)
        assert _who(app, name, 3) == {
            "anonymous": {"auth": None, "ctx": None, "vault": 0},  # an anonymous write: an anonymous hook
            "user": {"auth": user, "ctx": user, "vault": 0},  # a user's write: the user's power, no more
            "admin": {"auth": admin, "ctx": admin, "vault": 1},
        }, name
    # run_as: system: req.auth is still the writer, but req.alyx calls as the server.
    assert _who(app, "trusted", 3) == {"anonymous": {"auth": None, "ctx": None, "vault": 1},
                                       "user": {"auth": user, "ctx": user, "vault": 1},
                                       "admin": {"auth": admin, "ctx": admin, "vault": 1}}


def test_schedules_run_anonymous_unless_the_manifest_opts_in(fn_app: FnApp) -> None:
    schedule = "schedules:\n  - {name: tick, type: interval, expression: 1h, config: {input: {text: tick}}}\n"
    app = fn_app({"plain/manifest.yaml": schedule, "plain/index.py": WHO_PY,
                  "trusted/manifest.yaml": "run_as: system\n" + schedule, "trusted/index.py": WHO_PY},
                 schema=VAULT_SCHEMA)
    c = app.test_client()
    assert c.post("/api/collections/vault", json={"secret": "s"}, headers={"X-Test-User": "admin"}).status_code == 201
    for name in ("plain", "trusted"):  # an admin's "run now" runs it as the schedule would run
        assert c.post(f"/api/schedules/{name}/tick/run", headers={"X-Test-User": "admin"}).status_code == 202
    assert _who(app, "plain", 1) == {"tick": {"auth": None, "ctx": None, "vault": 0}}  # no caller: anonymous
    assert _who(app, "trusted", 1) == {"tick": {"auth": None, "ctx": None, "vault": 1}}  # run_as: system


# -- 17: a function's answer is capped and its status checked (502 otherwise) ---------------------------------------
ANSWER_PY = '''
def handler(req, res):
    size = int(req.query.get("size", "0"))
    if size:
        return res.text("x" * size)
    return res.text("odd", int(req.query["status"]))
'''
ANSWER_JS = '''
module.exports = async function (req, res) {
  const size = Number(req.query.size || 0);
  if (size) return res.text('x'.repeat(size));
  return res.text('odd', Number(req.query.status));
};
'''


@pytest.mark.parametrize("ext,source", [("py", ANSWER_PY), ("js", ANSWER_JS)], ids=["python", "node"])
def test_oversized_answers_and_invalid_statuses_are_502(fn_app: FnApp, ext: str, source: str) -> None:
    app = fn_app({f"answer.{ext}": source}, env={"ALYX_FUNCTIONS_MAX_RESPONSE_BYTES": "100000"})
    c = app.test_client()
    assert c.get("/api/functions/answer?size=100000").status_code == 200
    big = c.get("/api/functions/answer?size=100001")
    assert big.status_code == 502 and big.json["error"]["code"] == "function_bad_response", big.data[:300]
    assert "100000" in big.json["error"]["message"]
    for status in (999, 600, 99, 100, 101):
        r = c.get(f"/api/functions/answer?status={status}")
        assert r.status_code == 502 and r.json["error"]["code"] == "function_bad_response", (status, r.data[:300])
    for status in (200, 201, 404, 418, 599):
        assert c.get(f"/api/functions/answer?status={status}").status_code == status
    sandboxes = {run["sandbox"] for run in executions(app, function_id="answer")}
    assert len(sandboxes) == 1  # a bad answer does not cost the sandbox
    assert [r["status"] for r in executions(app, function_id="answer")].count("error") == 6  # logged as errors
