"""Realtime follows the session: logout, revocation, deletion and demotion reach every open socket
within auth.session_check_seconds — also when they happen in another worker (a second app on the same
database here; a real gunicorn with two workers in the last test) — and the subscriptions that are no
longer allowed end with an error frame (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from alyx.errors import AlyxError
from alyx.realtime import Client, authenticate_token
from alyx.rules import Principal
from tests.conftest import LiveServer, write_project

PASSWORD = "correct horse battery"
SCHEMA = """
collections:
  - name: users
    auth: true
  - name: notes
    fields:
      - {name: text, type: string}
      - {name: owner, type: string}
    rules:
      list: "auth != null && auth.id == doc.owner"
      view: "auth != null && auth.id == doc.owner"
      create: "true"
  - name: secrets
    fields:
      - {name: value, type: string}
"""
ROOT = Principal("root00000000001", "root@example.com", "admin", True)
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
CHECK = 1  # auth.session_check_seconds of these apps: the promise the tests measure against


@pytest.fixture
def apps(make_app, tmp_path):
    """Two apps on one database: `here` holds the sockets, `there` is another worker."""
    env = {"ALYX_AUTH_SESSION_CHECK_SECONDS": str(CHECK)}
    here = make_app(SCHEMA, env=env)
    there = make_app(SCHEMA, env=env, project=tmp_path / "project")
    return here, there


def sign_up(app, email: str = "ann@example.com") -> dict[str, Any]:
    resp = app.test_client().post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def socket(app, token: str) -> Client:
    """A connected client signed in with ``token`` the way the WebSocket session signs in."""
    svc = app.extensions["alyx"]
    client = Client(svc.realtime, f"t{time.monotonic_ns()}", wake=lambda: None)
    svc.realtime.authenticate(client, *authenticate_token(svc.auth, token), token=token)
    svc.realtime.clients[client.id] = client  # as connect() does, without starting the worker's loops
    return client


def frames(client: Client) -> list[dict[str, Any]]:
    out = [json.loads(f) for f in client.outbox]
    client.outbox.clear()
    return out


def wait_for_error(app, client: Client, code: str) -> tuple[dict[str, Any], float]:
    """Run the session re-check as the worker's loop would until an error frame arrives."""
    rt = app.extensions["alyx"].realtime
    start = time.monotonic()
    while time.monotonic() - start < CHECK + 3:
        rt.check_sessions()
        errors = [f for f in frames(client) if f["type"] == "error"]
        if errors:
            assert errors[0]["payload"]["code"] == code, errors
            return errors[0], time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"no {code} error frame within {CHECK + 3} s")


def test_logout_in_another_worker_ends_the_sockets_subscriptions(apps) -> None:
    here, there = apps
    svc = here.extensions["alyx"]
    ann = sign_up(here)
    client = socket(here, ann["access_token"])
    svc.realtime.subscribe(client, {"collection": "notes"}, "1")
    assert frames(client)[0]["type"] == "snapshot"
    svc.realtime.check_sessions()
    assert frames(client) == []  # nothing changed: nothing sent
    out = there.test_client().post("/api/auth/logout", headers={"Authorization": f"Bearer {ann['access_token']}"})
    assert out.status_code == 204
    error, took = wait_for_error(here, client, "session_revoked")
    assert took <= CHECK + 0.5 and error["payload"]["subscription_ids"] == ["s1"]
    assert client.subscriptions == {} and client.principal is None
    with svc.db.connection():
        svc.records.create("notes", {"text": "after logout", "owner": ann["user"]["id"]})
    svc.realtime.hub.advance()
    assert frames(client) == []
    with pytest.raises(AlyxError) as refused:  # and it cannot subscribe again as anyone but anonymous
        svc.realtime.subscribe(client, {"collection": "notes"}, "2")
    assert refused.value.status in (401, 403)


def test_a_deleted_user_cannot_open_new_subscriptions(apps) -> None:
    here, there = apps
    svc = here.extensions["alyx"]
    ann = sign_up(here)
    client = socket(here, ann["access_token"])
    with there.extensions["alyx"].db.connection():
        there.extensions["alyx"].records.delete("users", ann["user"]["id"], ROOT)
    deadline = time.monotonic() + CHECK + 2
    while True:  # the subscribe path itself re-checks the session (through the same cache)
        try:
            svc.realtime.subscribe(client, {"collection": "notes"}, "1")
        except AlyxError as exc:
            assert exc.status == 401 and exc.code == "session_revoked"
            break
        assert time.monotonic() < deadline, "a deleted user went on subscribing"
        svc.realtime.unsubscribe(client, next(iter(client.subscriptions)))
        time.sleep(0.1)
    assert client.principal is None and client.subscriptions == {}


def test_a_demoted_admin_stops_receiving_admin_only_rows(apps) -> None:
    here, there = apps
    svc = here.extensions["alyx"]
    svc.auth.create_admin("root@example.com", PASSWORD)
    admin = here.test_client().post("/api/auth/login", json={"email": "root@example.com",
                                                             "password": PASSWORD}).get_json()
    client = socket(here, admin["access_token"])
    svc.realtime.subscribe(client, {"collection": "secrets"}, "1")
    assert frames(client)[0]["type"] == "snapshot"
    with there.extensions["alyx"].db.connection():
        there.extensions["alyx"].records.update("users", admin["user"]["id"], {"role": "user"}, ROOT)
    error, took = wait_for_error(here, client, "session_changed")
    assert took <= CHECK + 0.5 and error["payload"]["subscription_ids"] == ["s1"]
    assert client.principal is not None and client.principal.role == "user" and client.subscriptions == {}
    with svc.db.connection():
        svc.records.create("secrets", {"value": "top"}, ROOT)
    svc.realtime.hub.advance()
    assert frames(client) == []
    with pytest.raises(AlyxError) as refused:
        svc.realtime.subscribe(client, {"collection": "secrets"}, "2")
    assert refused.value.status == 403


def test_over_real_sockets_a_logout_reaches_a_socket_on_any_worker(tmp_path) -> None:
    """gunicorn -k gevent -w 2: the socket's worker learns of a logout made anywhere within the promise."""
    project = write_project(tmp_path / "project", SCHEMA)
    live = LiveServer(project, workers=2, env={"ALYX_AUTH_SECRET": "auth-realtime-" + "x" * 32})
    try:
        r = requests.post(f"{live.url}/api/auth/register", json={"email": "ann@example.com", "password": PASSWORD},
                          timeout=10)
        assert r.status_code == 201, r.text
        token = r.json()["access_token"]
        sockets = [connect(live.url.replace("http", "ws", 1) + "/api/realtime?token=" + token, open_timeout=10)
                   for _ in range(4)]  # with four sockets, both workers very likely hold one; each must learn
        try:
            for ws in sockets:
                assert json.loads(ws.recv(timeout=10))["type"] == "connected"
                ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"collection": "notes"}}))
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            logout = requests.post(f"{live.url}/api/auth/logout", headers={"Authorization": f"Bearer {token}"},
                                   timeout=10)
            assert logout.status_code == 204
            started = time.monotonic()
            for ws in sockets:
                got = json.loads(ws.recv(timeout=10))
                assert got["type"] == "error" and got["payload"]["code"] == "session_revoked", got
            assert time.monotonic() - started <= 5.5  # auth.session_check_seconds (5) is the promise
        finally:
            for ws in sockets:
                ws.close()
    finally:
        live.stop()
