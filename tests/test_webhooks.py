"""Incoming webhooks answered by the function (``mode: sync``, the default) or queued (``mode: async``).

Real runtimes in the process sandbox tier, through the Flask app; the README's webhook example verbatim.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.signatures import sign
from tests.harness import eventually
from tests.helpers import assert_error
from tests.test_events import EvApp, event_apps, executions, jobs, manifest

SECRET = "whsec_readme_0123456789"
MISMATCH = "the signature does not match the body"

# The upstream README's example, verbatim (functions/stripe-webhook/manifest.yaml and index.js).
README_MANIFEST = """
name: stripe-webhook
runtime: node
hooks:
  - type: webhook
    verification:
      type: hmac-sha256
      header: X-Stripe-Signature
      secret: ${STRIPE_WEBHOOK_SECRET}
"""
README_HANDLER = """
export default async function handler(req, res) {
  const { body, verified, verification_error } = req.input;

  if (!verified) {
    return res.json({ error: verification_error }, 401);
  }

  const event = JSON.parse(body);

  if (event.type === 'charge.succeeded') {
    // Handle successful charge
  }

  return res.json({ received: true });
}
"""

ANSWERS = '''
import json, os, time
def handler(req, res):
    print(json.dumps({"verified": req.input["verified"], "error": req.input["verification_error"],
                      "trigger": req.trigger, "json": req.json}))
    event = req.json or {}
    if event.get("type") == "slow":
        time.sleep(5)
    if event.get("type") == "raise":
        raise ValueError("the handler broke")
    if event.get("type") == "exit":
        os._exit(3)
    if not req.input["verified"]:
        return res.json({"error": req.input["verification_error"]}, 401)
    return res.status(201).header("X-Handled-By", "answers").json({"received": event.get("type")})
'''


def webhook(mode: str | None = None, required: bool = False, timeout: str = "10s") -> str:
    mode_line = f"\n    mode: {mode}" if mode else ""
    return manifest(f"""
runtime: python
timeout: {timeout}
hooks:
  - type: webhook{mode_line}
    verification:
      header: X-Signature
      secret: ${{HOOK_SECRET}}
      required: {str(required).lower()}
""")


def github_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def ev_app(tmp_path: Path, database_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[EvApp]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    with event_apps(tmp_path, database_env) as factory:
        yield factory


def test_the_readme_webhook_answers_200_and_401_from_the_function(ev_app: EvApp) -> None:
    app = ev_app({"stripe-webhook/manifest.yaml": README_MANIFEST, "stripe-webhook/index.js": README_HANDLER})
    c = app.test_client()
    body = b'{"type":"charge.succeeded","data":{"amount":4200}}'
    good = c.post("/api/webhooks/stripe-webhook", data=body, content_type="application/json",
                  headers={"X-Stripe-Signature": sign(body, SECRET)})
    assert (good.status_code, good.json) == (200, {"received": True})
    bad = c.post("/api/webhooks/stripe-webhook", data=body, content_type="application/json",
                 headers={"X-Stripe-Signature": sign(body, "not-the-secret")})
    assert bad.status_code == 401 and bad.json == {"error": MISMATCH}
    unsigned = c.post("/api/webhooks/stripe-webhook", data=body, content_type="application/json")
    assert unsigned.status_code == 401 and "missing" in unsigned.json["error"]
    assert not jobs(app)  # nothing was queued: the function ran at once
    runs = {r["id"]: r for r in executions(app, function_id="stripe-webhook")}
    assert set(runs) == {good.headers["X-Alyx-Execution-Id"], bad.headers["X-Alyx-Execution-Id"],
                         unsigned.headers["X-Alyx-Execution-Id"]}
    logged = runs[good.headers["X-Alyx-Execution-Id"]]
    assert logged["trigger_type"] == "webhook" and logged["status"] == "success"
    assert logged["input"]["verified"] is True and logged["input"]["body"] == body.decode()
    assert logged["output"]["status"] == 200
    refused = runs[bad.headers["X-Alyx-Execution-Id"]]
    assert refused["status"] == "success" and refused["output"]["status"] == 401  # the function's own answer
    assert refused["input"]["verified"] is False
    assert refused["input"]["verification_error"] == MISMATCH


def test_sync_is_the_default_and_passes_status_headers_and_body(ev_app: EvApp) -> None:
    app = ev_app({"answers/manifest.yaml": webhook(), "answers/index.py": ANSWERS})
    c = app.test_client()
    body = b'{"type":"push"}'
    r = c.post("/api/webhooks/answers", data=body, content_type="application/json",
               headers={"X-Signature": github_signature(body)})
    assert r.status_code == 201 and r.json == {"received": "push"}
    assert r.headers["X-Handled-By"] == "answers" and r.headers["Content-Type"].startswith("application/json")
    (run,) = executions(app, function_id="answers")
    assert run["id"] == r.headers["X-Alyx-Execution-Id"] and run["trigger_type"] == "webhook"
    assert '"verified": true' in run["logs"]["stdout"] and '"trigger": "webhook"' in run["logs"]["stdout"]
    assert '"json": {"type": "push"}' in run["logs"]["stdout"]  # req.json is the sender's body
    # required: false (the default): an unverified delivery still runs, and the function decides.
    r = c.post("/api/webhooks/answers", data=body, content_type="application/json",
               headers={"X-Signature": "sha256=" + "0" * 64})
    assert r.status_code == 401 and r.json == {"error": MISMATCH}


def test_required_verification_refuses_with_401_before_any_code_runs(ev_app: EvApp) -> None:
    app = ev_app({"strict/manifest.yaml": webhook(required=True), "strict/index.py": ANSWERS,
                  "queued/manifest.yaml": webhook("async", required=True), "queued/index.py": ANSWERS})
    c = app.test_client()
    body = b'{"type":"push"}'
    for name in ("strict", "queued"):
        for headers in ({}, {"X-Signature": github_signature(body, "wrong")}):
            assert_error(c.post(f"/api/webhooks/{name}", data=body, headers=headers), 401, "invalid_signature")
    assert not jobs(app)
    denied = executions(app)
    assert sorted(r["function_id"] for r in denied) == ["queued", "queued", "strict", "strict"]
    assert all(r["status"] == "denied" and r["logs"]["stdout"] == "" for r in denied)  # no code ran
    ok = c.post("/api/webhooks/strict", data=body, content_type="application/json",
                headers={"X-Signature": github_signature(body)})
    assert ok.status_code == 201 and ok.json == {"received": "push"}


def test_async_still_queues_and_answers_202(ev_app: EvApp) -> None:
    app = ev_app({"later/manifest.yaml": webhook("async"), "later/index.py": ANSWERS})
    c = app.test_client()
    body = b'{"type":"push"}'
    r = c.post("/api/webhooks/later", data=body, content_type="application/json",
               headers={"X-Signature": github_signature(body)})
    assert r.status_code == 202 and r.json["verified"] is True and r.json["verification_error"] is None
    (run,) = eventually(lambda: executions(app, function_id="later"), what="the queued delivery")
    assert run["trigger_type"] == "webhook" and run["status"] == "success" and run["output"]["status"] == 201
    assert [j["id"] for j in jobs(app, status="done")] == [r.json["job_id"]]


def test_a_failing_sync_webhook_answers_like_an_http_call(ev_app: EvApp) -> None:
    app = ev_app({"answers/manifest.yaml": webhook(timeout="1s"), "answers/index.py": ANSWERS,
                  "broken/manifest.yaml": webhook().replace("timeout: 10s", "timeout: soon"),
                  "broken/index.py": ANSWERS})
    c = app.test_client()

    def deliver(kind: str) -> object:
        body = f'{{"type":"{kind}"}}'.encode()
        return c.post("/api/webhooks/answers", data=body, content_type="application/json",
                      headers={"X-Signature": github_signature(body)})

    started = time.monotonic()
    slow = assert_error(deliver("slow"), 504, "function_timeout")
    assert time.monotonic() - started < 4.5  # the manifest's timeout (1s), not the handler's sleep
    raised = assert_error(deliver("raise"), 500, "function_error")
    assert "traceback" not in str(raised).lower()
    crashed = assert_error(deliver("exit"), 502, "function_crashed")
    assert crashed["details"]["exit_code"] == 3
    by_id = {r["id"]: r for r in executions(app, function_id="answers")}
    assert by_id[slow["details"]["execution_id"]]["status"] == "timeout"
    assert by_id[raised["details"]["execution_id"]]["status"] == "error"
    assert by_id[crashed["details"]["execution_id"]]["status"] == "crashed"
    assert {r["trigger_type"] for r in by_id.values()} == {"webhook"}
    assert deliver("push").status_code == 201  # a fresh sandbox after the timeout and the crash
    unavailable = assert_error(c.post("/api/webhooks/broken", data=b"{}"), 503, "function_unavailable")
    assert unavailable["message"].startswith("functions/broken/manifest.yaml:3: timeout: expected a duration")
