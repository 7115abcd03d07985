"""GET /api/realtime over real WebSockets (the websockets package) against `gunicorn -k gevent -w 2`.

No timing thresholds: every wait is for a frame, bounded by a timeout, and the content is asserted.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, write_project

SCHEMA = """
collections:
  - name: users
    auth: true
    fields:
      - {name: name, type: string}
  - name: notes
    fields:
      - {name: text, type: string}
      - {name: owner, type: string}
    rules:
      list: "auth != null && auth.id == doc.owner"
      view: "auth != null && auth.id == doc.owner"
      create: "true"
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: status, type: select, values: [draft, published], default: draft}
      - {name: public, type: bool, default: true}
      - {name: views, type: int, default: 0}
    rules: {list: "doc.public == true", view: "true", create: "true", update: "true", delete: "true"}
  - name: secrets
    fields:
      - {name: value, type: string}
"""
TIMEOUT = 10
SECRET = "realtime-test-secret-" + "x" * 24
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    project = write_project(tmp_path_factory.mktemp("realtime") / "project", SCHEMA)
    live = LiveServer(project, workers=2, env={"ALYX_REALTIME_MAX_FRAME_BYTES": "4096", "ALYX_AUTH_SECRET": SECRET})
    live.project = project
    yield live
    live.stop()
    log = live.log.read_text()
    assert "Traceback" not in log, log[-3000:]


OPEN_SOCKETS: list[ClientConnection] = []


@pytest.fixture(autouse=True)
def close_sockets() -> Iterator[None]:
    """Each test's sockets close when it ends: an open one would hold gunicorn's graceful stop."""
    yield
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


class Socket:
    """A test client: frames as dicts, waits bounded by TIMEOUT."""

    def __init__(self, server: LiveServer, query: str = "", headers: dict[str, str] | None = None) -> None:
        self.ws: ClientConnection = connect(server.url.replace("http", "ws", 1) + "/api/realtime" + query,
                                            open_timeout=TIMEOUT, compression=None, additional_headers=headers)
        OPEN_SOCKETS.append(self.ws)
        self.connected = self.recv()
        assert self.connected["type"] == "connected"

    @property
    def node(self) -> str:
        return self.connected["payload"]["client_id"].split("-")[0]

    def send(self, data: Any) -> None:
        self.ws.send(data if isinstance(data, str) else json.dumps(data))

    def recv(self) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=TIMEOUT))

    def request(self, type_: str, payload: dict[str, Any] | None = None, id_: str = "r") -> dict[str, Any]:
        self.send({"id": id_, "type": type_, **({"payload": payload} if payload is not None else {})})
        return self.recv()

    def subscribe(self, **payload: Any) -> dict[str, Any]:
        reply = self.request("subscribe", payload)
        assert reply["type"] == "snapshot", reply
        return reply["payload"]

    def changes_until(self, want: set[str]) -> list[tuple[int, str, str]]:
        """(cursor, kind, id) of every change received until all ids in `want` were seen."""
        seen: list[tuple[int, str, str]] = []
        while not want <= {rid for _, _, rid in seen}:
            frame = self.recv()
            assert frame["type"] == "delta", frame
            for kind, items in frame["payload"]["changes"].items():
                for item in items:
                    seen.append((frame["payload"]["cursor"], kind, item if kind == "deletes" else item["id"]))
        return seen

    def close(self) -> None:
        self.ws.close()


WORKER_SLOTS = 4  # gunicorn --worker-connections of the servers whose sockets must reach both workers


def fanout_server(project: Path, env: dict[str, str] | None = None) -> LiveServer:
    """Two workers that each hold at most WORKER_SLOTS connections: a full worker stops accepting."""
    return LiveServer(project, workers=2, env={"GUNICORN_CMD_ARGS": f"--worker-connections {WORKER_SLOTS}",
                                               **(env or {})})


def sockets_on_every_worker(live: LiveServer, workers: int = 2) -> list[Socket]:
    """Sockets opened until every worker holds one (each `connected` frame names its worker's node).

    Deterministic whatever the kernel does: a gevent worker whose WORKER_SLOTS connections are
    taken stops accepting, so after at most (workers - 1) * WORKER_SLOTS + 1 sockets each worker has one.
    """
    sockets = [Socket(live)]
    while len({s.node for s in sockets}) < workers:
        assert len(sockets) <= (workers - 1) * WORKER_SLOTS, "a full worker went on accepting connections"
        sockets.append(Socket(live))
    return sockets


def create(server: LiveServer, **body: Any) -> str:
    r = requests.post(f"{server.url}/api/collections/posts", json=body, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def update(server: LiveServer, rid: str, **body: Any) -> None:
    r = requests.patch(f"{server.url}/api/collections/posts/{rid}", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_changes_reach_subscribers_on_every_worker(tmp_path: Path) -> None:
    live = fanout_server(write_project(tmp_path / "fanout", SCHEMA))
    try:
        sockets = sockets_on_every_worker(live)
        assert len({s.node for s in sockets}) == 2, "the two workers should each hold a connection"
        for s in sockets:
            s.subscribe(collection="posts", filter='title.startsWith("fanout")')
        ids = {create(live, title=f"fanout {i}") for i in range(6)}
        for s in sockets:
            got = s.changes_until(ids)
            assert sorted(rid for _, _, rid in got) == sorted(ids) and {k for _, k, _ in got} == {"inserts"}
            s.close()
    finally:
        live.stop()
    assert "Traceback" not in live.log.read_text()


def test_filter_and_rule_transitions(server: LiveServer) -> None:
    s = Socket(server)
    sub = s.subscribe(collection="posts", filter='status == "published" && title == "transit"')
    assert sub["docs"] == [] and isinstance(sub["cursor"], int)
    rid = create(server, title="transit")  # a draft: not in the filter, nothing is sent
    marker = create(server, title="transit", status="published")
    assert [(k, i) for _, k, i in s.changes_until({marker})] == [("inserts", marker)]
    update(server, rid, status="published")
    assert [(k, i) for _, k, i in s.changes_until({rid})] == [("inserts", rid)]
    update(server, rid, views=5)
    assert [(k, i) for _, k, i in s.changes_until({rid})] == [("updates", rid)]
    update(server, rid, public=False)  # the rule now hides it: a delete, then silence
    assert [(k, i) for _, k, i in s.changes_until({rid})] == [("deletes", rid)]
    update(server, rid, views=6)
    update(server, marker, views=1)
    assert [(k, i) for _, k, i in s.changes_until({marker})] == [("updates", marker)]
    update(server, rid, public=True)
    assert [(k, i) for _, k, i in s.changes_until({rid})] == [("inserts", rid)]
    update(server, rid, status="draft")
    assert [(k, i) for _, k, i in s.changes_until({rid})] == [("deletes", rid)]
    s.close()


def test_anonymous_subscribers_never_see_hidden_records(server: LiveServer) -> None:
    watcher = Socket(server)
    watcher.subscribe(collection="posts", filter='title.startsWith("hid")')
    hidden = create(server, title="hidden", public=False)
    update(server, hidden, views=3)
    shown = create(server, title="hid-not")
    got = watcher.changes_until({shown})
    assert [i for _, _, i in got] == [shown]  # nothing about `hidden`, not even its id
    again = Socket(server)
    snap = again.subscribe(collection="posts", filter='title.startsWith("hid")')
    assert [d["id"] for d in snap["docs"]] == [shown]
    watcher.close()
    again.close()


def test_unauthenticated_subscribe_to_a_private_collection_is_refused(server: LiveServer) -> None:
    s = Socket(server)
    reply = s.request("subscribe", {"collection": "secrets"}, "x1")
    assert reply == {"id": "x1", "type": "error", "payload": {"code": "unauthorized", "message": reply["payload"]
                                                             ["message"]}}
    assert s.request("ping", id_="p")["type"] == "pong"
    s.close()


def test_malformed_frames_and_unknown_collections_are_error_frames(server: LiveServer) -> None:
    s = Socket(server)
    cases = [("not json", "invalid_json"), ("[1, 2]", "invalid_frame"), ('{"type": 5}', "invalid_frame"),
             ('{"type": "subscribe", "payload": []}', "invalid_frame"), ('{"type": "launch"}', "unknown_type"),
             ('{"type": "subscribe", "payload": {}}', "bad_request"),
             ('{"type": "subscribe", "payload": {"collection": "nope"}}', "not_found"),
             ('{"type": "subscribe", "payload": {"collection": "posts", "filter": "secret == 1"}}', "bad_request"),
             ('{"type": "subscribe", "payload": {"collection": "posts", "filter": "views >>"}}', "bad_request"),
             ('{"type": "unsubscribe", "payload": {"subscription_id": "s999"}}', "not_found"),
             ('{"type": "subscribe", "payload": {"collection": "posts", "since": 999999999}}', "cursor_expired"),
             ('{"type": "auth", "payload": {"token": 12}}', "unauthorized")]
    for raw, code in cases:
        s.send(raw)
        reply = s.recv()
        assert reply["type"] == "error" and reply["payload"]["code"] == code, (raw, reply)
        assert reply["payload"]["message"]
    assert s.request("ping", id_="still-alive") == {"id": "still-alive", "type": "pong"}
    sub = s.subscribe(collection="posts", limit=1)
    assert s.request("unsubscribe", {"subscription_id": sub["subscription_id"]})["type"] == "unsubscribed"
    s.close()


def test_a_request_that_is_not_a_websocket_handshake_is_a_400(server: LiveServer) -> None:
    url = f"{server.url}/api/realtime"
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    cases = [{}, upgrade, {**upgrade, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
             {**upgrade, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"}]
    for headers in cases:
        r = requests.get(url, headers=headers, timeout=10)
        assert r.status_code == 400, (headers, r.text)
        assert r.json()["error"]["code"] == "bad_request" and "WebSocket" in r.json()["error"]["message"]
    assert "Traceback" not in server.log.read_text()


def test_an_oversized_frame_closes_with_1009(server: LiveServer) -> None:
    s = Socket(server)
    s.send(json.dumps({"type": "ping", "payload": {"pad": "x" * 10_000}}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            s.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert Socket(server).request("ping")["type"] == "pong"  # the worker is fine


def test_resume_after_a_forced_disconnect_has_no_gap_and_no_duplicate(server: LiveServer) -> None:
    s = Socket(server)
    snap = s.subscribe(collection="posts", filter='title.startsWith("resume")')
    first = create(server, title="resume 0")
    got = s.changes_until({first})
    cursor = max(c for c, _, _ in got)
    assert cursor > snap["cursor"]
    s.ws.socket.shutdown(socket.SHUT_RDWR)  # the network drops: no close handshake
    s.ws.socket.close()
    missed = [create(server, title=f"resume {i}") for i in range(1, 4)]
    back = Socket(server)
    resumed = back.subscribe(collection="posts", filter='title.startsWith("resume")', since=cursor)
    assert resumed["resumed"] is True and resumed["cursor"] == cursor
    later = create(server, title="resume 4")
    replay = back.changes_until(set(missed) | {later})
    assert [rid for _, _, rid in replay] == missed + [later]  # in order, each once, nothing from before
    cursors = [c for c, _, _ in replay]
    assert cursors == sorted(cursors) and cursors[0] > cursor
    assert back.request("ping")["type"] == "pong"  # and nothing else was queued before the pong
    back.close()


def test_a_broker_fans_out_across_workers(tmp_path: Path) -> None:
    """Redis pub/sub (the real one on 127.0.0.1:6379) instead of polling the feed."""
    project = write_project(tmp_path / "redis", SCHEMA)
    live = fanout_server(project, {"ALYX_REALTIME_BROKER": "redis://127.0.0.1:6379/0"})
    try:
        sockets = sockets_on_every_worker(live)
        for s in sockets:
            s.subscribe(collection="posts")
        ids = {create(live, title=f"via redis {i}") for i in range(4)}
        for s in sockets:
            assert {rid for _, _, rid in s.changes_until(ids)} == ids
            s.close()
    finally:
        live.stop()
    assert "Traceback" not in live.log.read_text()


def test_postgres_listen_notify_fans_out(tmp_path: Path, pg_url: str) -> None:
    project = write_project(tmp_path / "pg", SCHEMA)
    live = fanout_server(project, {"ALYX_DATABASE_URL": pg_url, "ALYX_REALTIME_BROKER": "postgres"})
    try:
        sockets = sockets_on_every_worker(live)
        for s in sockets:
            s.subscribe(collection="posts")
        ids = {create(live, title=f"via notify {i}") for i in range(4)}
        for s in sockets:
            assert {rid for _, _, rid in s.changes_until(ids)} == ids
        # and resume works against the PostgreSQL feed too
        cursor = sockets[0].subscribe(collection="posts")["cursor"]
        later = create(live, title="after")
        back = Socket(live)
        back.subscribe(collection="posts", since=cursor)
        assert [rid for _, _, rid in back.changes_until({later})] == [later]
        for s in sockets + [back]:
            s.close()
    finally:
        live.stop()
    assert "Traceback" not in live.log.read_text()


def test_the_python_client_reconnects_and_resumes(server: LiveServer) -> None:
    from alyx.realtime_client import RealtimeClient

    url = server.url.replace("http", "ws", 1) + "/api/realtime"
    with RealtimeClient(url) as rt:
        sub = rt.subscribe("posts", filter='title.startsWith("client")')
        assert sub.next_event(TIMEOUT)[0] == "snapshot"
        first = create(server, title="client 1")
        assert sub.next_event(TIMEOUT) == ("insert", sub.docs[first])
        rt.drop_connection()
        missed = create(server, title="client 2")  # written while the client may be away
        kind, doc = sub.next_event(TIMEOUT)
        assert (kind, doc["id"]) == ("insert", missed)
        update(server, first, title="client 1b")
        kind, doc = sub.next_event(TIMEOUT)
        assert (kind, doc["title"]) == ("update", "client 1b")
        assert rt.connections >= 2 and set(sub.docs) == {first, missed}


def sign_in(server: LiveServer, email: str, ttl: int | None = None) -> tuple[str, str]:
    """A user row and an access token for it, minted in process with the server's secret (same database)."""
    from alyx.auth import Client
    from alyx.clock import utcnow
    from alyx.config import load_config
    from alyx.models import new_id
    from alyx.services import build_services

    env = {"ALYX_AUTH_SECRET": SECRET, **({"ALYX_AUTH_ACCESS_TOKEN_TTL": str(ttl)} if ttl else {})}
    svc = build_services(load_config(server.project, env=env), migrate=False)
    try:
        user = {"id": new_id(), "email": email, "role": "user", "verified": False}
        now = utcnow()
        with svc.db.connection(), svc.db.write():
            svc.models["users"].insert(**user, created_at=now, updated_at=now).execute()
        return user["id"], svc.auth.start_session(user, "password", Client())["access_token"]
    finally:
        svc.close()


def create_note(server: LiveServer, owner: str, text: str) -> str:
    r = requests.post(f"{server.url}/api/collections/notes", json={"owner": owner, "text": text}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_signed_in_users_see_only_their_own_private_records(server: LiveServer) -> None:
    alice_id, alice_token = sign_in(server, "alice@example.com")
    bob_id, bob_token = sign_in(server, "bob@example.com")
    alice = Socket(server, headers={"Authorization": f"Bearer {alice_token}"})  # header
    bob = Socket(server, query=f"?token={bob_token}")  # query string
    anon = Socket(server)
    assert anon.request("auth", {"token": bob_token}, "a")["payload"]["user"]["id"] == bob_id  # auth frame
    for s in (alice, bob, anon):
        assert s.subscribe(collection="notes")["docs"] == []
    private = create_note(server, alice_id, "alice's secret")
    visible_to_bob = create_note(server, bob_id, "bob's")
    assert [i for _, _, i in alice.changes_until({private})] == [private]
    for s in (bob, anon):
        got = s.changes_until({visible_to_bob})
        assert [i for _, _, i in got] == [visible_to_bob]  # never Alice's note, not even its id
    bad = Socket(server)
    reply = bad.request("auth", {"token": alice_token + "x"}, "b")
    assert reply["type"] == "error" and reply["payload"]["code"] in ("unauthorized", "invalid_token"), reply
    by_query = Socket(server, query=f"?token={alice_token}x")
    reply = by_query.recv()
    assert reply["type"] == "error" and reply["payload"]["code"] in ("unauthorized", "invalid_token"), reply
    assert by_query.subscribe(collection="posts", limit=1)["docs"] is not None  # still usable, anonymously
    by_query.close()
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        Socket(server, headers={"Authorization": f"Bearer {alice_token}x"})
    assert refused.value.response.status_code == 401
    for s in (alice, bob, anon, bad):
        s.close()


def test_an_expiring_token_closes_the_subscription_with_an_error(server: LiveServer) -> None:
    user_id, token = sign_in(server, "carol@example.com", ttl=2)
    s = Socket(server, query=f"?token={token}")
    sub = s.subscribe(collection="notes")
    frame = s.recv()  # the next frame is the expiry, once the token's exp has passed
    assert frame["type"] == "error" and frame["payload"]["code"] == "token_expired", frame
    assert frame["payload"]["subscription_ids"] == [sub["subscription_id"]]
    create_note(server, user_id, "after expiry")
    assert s.request("ping", id_="p") == {"id": "p", "type": "pong"}  # no delta came before the pong
    s.close()


def test_the_javascript_client_reconnects_and_resumes(server: LiveServer) -> None:
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(__file__).parent / "js" / "realtime_client_check.js"
    run = subprocess.run([node, "--experimental-websocket", "--no-warnings", str(script), server.url],
                         capture_output=True, text=True, timeout=30)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"], (result, run.stderr[-2000:])
    assert result["events"] == [["snapshot", 0], ["insert", "js first"], ["insert", "js while away"]]


def test_more_simultaneous_sockets_than_database_connections(server: LiveServer) -> None:
    """A WebSocket holds no pooled database connection (database.pool_size is 32 per worker)."""
    from concurrent.futures import ThreadPoolExecutor

    def open_and_subscribe(_: int) -> Socket:
        s = Socket(server)
        s.subscribe(collection="posts", limit=1)
        return s

    with ThreadPoolExecutor(max_workers=50) as pool:
        sockets = list(pool.map(open_and_subscribe, range(100)))
    rid = create(server, title="crowd")
    for s in sockets:
        assert [i for _, _, i in s.changes_until({rid})] == [rid]
        s.close()


def test_heartbeats_reap_dead_peers_and_connections_are_bounded(tmp_path: Path) -> None:
    """One worker, a 1 s heartbeat and room for 2 connections."""
    import base64
    import os

    def frames_of(data: bytes) -> tuple[list[int], bytes]:  # small unmasked server frames only
        opcodes = []
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
            opcodes.append(data[0] & 0x0F)
            data = data[2 + (data[1] & 0x7F):]
        return opcodes, data

    project = write_project(tmp_path / "limits", SCHEMA)
    live = LiveServer(project, workers=1, env={"ALYX_REALTIME_HEARTBEAT_SECONDS": "1",
                                               "ALYX_REALTIME_MAX_CONNECTIONS": "2"})
    try:
        alive = Socket(live)  # the websockets client answers pings by itself
        raw = socket.create_connection(("127.0.0.1", live.port), timeout=TIMEOUT)  # this one never answers
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(f"GET /api/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += raw.recv(4096)
        head, data = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        opcodes: list[int] = []
        while not opcodes:  # its `connected` frame: it now counts
            data += raw.recv(4096)
            found, data = frames_of(data)
            opcodes += found
        third = connect(live.url.replace("http", "ws", 1) + "/api/realtime", open_timeout=TIMEOUT, compression=None)
        refusal = json.loads(third.recv(timeout=TIMEOUT))
        assert refusal["type"] == "error" and refusal["payload"]["code"] == "too_many_connections", refusal
        with pytest.raises(ConnectionClosed) as closed:
            third.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        while 8 not in opcodes:  # read until the server closes it
            chunk = raw.recv(4096)
            if not chunk:
                break
            found, data = frames_of(data + chunk)
            opcodes += found
        assert 9 in opcodes and opcodes[-1] == 8, opcodes  # pinged, then closed for not answering
        assert alive.request("ping")["type"] == "pong"  # the one that answers pings is still there
        alive.close()
        raw.close()
    finally:
        live.stop()


def test_the_python_client_signs_in_again_when_its_token_expires(server: LiveServer) -> None:
    from alyx.realtime_client import RealtimeClient

    user_id, short = sign_in(server, "dave@example.com", ttl=2)
    other_id, fresh = sign_in(server, "erin@example.com")  # the token that comes next is Erin's
    tokens = [short]
    url = server.url.replace("http", "ws", 1) + "/api/realtime"
    with RealtimeClient(url, token=lambda: tokens[-1]) as rt:
        sub = rt.subscribe("notes")
        assert sub.next_event(TIMEOUT) == ("snapshot", [])
        tokens.append(fresh)  # what a refresh would hand out
        kind, error = sub.next_event(TIMEOUT)
        assert (kind, error["code"]) == ("error", "token_expired")
        note = create_note(server, user_id, "for Dave")  # no longer who this connection is
        other = create_note(server, other_id, "for Erin")
        kind, doc = sub.next_event(TIMEOUT)
        assert (kind, doc["id"]) == ("insert", other) and note not in sub.docs



def test_a_reader_that_never_reads_is_disconnected(tmp_path: Path) -> None:
    """A client that stops reading is cut (write timeout, send-queue bound) and the others go on (issue 15 item 7)."""
    import base64
    import os
    import time

    project = write_project(tmp_path / "slow", SCHEMA)
    live = LiveServer(project, workers=1, env={"ALYX_REALTIME_HEARTBEAT_SECONDS": "300",  # not the heartbeat
                                               "ALYX_REALTIME_WRITE_TIMEOUT_SECONDS": "300",  # nor the timeout:
                                               "ALYX_REALTIME_SEND_QUEUE_MAX": "20"})  # the queue bound cuts it
    try:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", live.port))
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(f"GET /api/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b'"connected"' not in data:
            data += raw.recv(4096)
        mask = os.urandom(4)
        body = json.dumps({"id": "1", "type": "subscribe", "payload": {"collection": "posts"}}).encode()
        raw.sendall(bytes((0x81, 0x80 | len(body))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
        while b'"snapshot"' not in data:
            data += raw.recv(4096)
        # subscribed; from now on it never reads
        watcher = Socket(live)
        watcher.subscribe(collection="posts")
        for _ in range(300):  # ~9 MB for the reader that never reads: more than the socket buffers hold
            watcher.changes_until({create(live, title="x" * 30000)})  # the others are not slowed
        # Without reading a byte: the server's end of the connection must leave ESTABLISHED (cut), within
        # the 5 s grace of a slow consumer's close frame (reading would unblock the server's write).
        client_port, burst_end = raw.getsockname()[1], time.monotonic()
        while server_side_established(live.port, client_port):
            assert time.monotonic() - burst_end < 30, "the server kept the reader that never reads"
            time.sleep(0.2)
        assert watcher.request("ping")["type"] == "pong"
        watcher.close()
        raw.close()
    finally:
        live.stop()


def server_side_established(server_port: int, client_port: int) -> bool:
    """Whether the server's socket of one connection (127.0.0.1) is ESTABLISHED, from /proc/net/tcp."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return fields[3] == "01"
    return False
