"""The realtime service in process: the change feed, who sees what, coalescing, limits (SQLite and PostgreSQL).

The hub is driven by hand (`hub.advance()`) instead of by its tailer greenlet, so these tests wait
for nothing; tests/test_realtime_live.py covers the same paths over real WebSockets.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import orjson
import pytest

from alyx.clock import utcnow
from alyx.errors import AlyxError
from alyx.realtime import CLOSE_SLOW_CONSUMER, Change, Client, CursorExpired, RedisBroker, merge_changes
from alyx.rules import Principal

NOTES_SCHEMA = """
collections:
  - name: users
    auth: true
    fields:
      - {name: name, type: string}
  - name: notes
    fields:
      - {name: text, type: string}
      - {name: owner, type: string}
      - {name: status, type: select, values: [draft, published], default: draft}
      - {name: due, type: datetime}
    rules:
      list: "auth != null && auth.id == doc.owner"
      view: "auth != null && auth.id == doc.owner"
      create: "true"
      update: "true"
      delete: "true"
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: public, type: bool, default: true}
      - {name: views, type: int, default: 0}
    rules: {list: "doc.public == true", view: "true", create: "true", update: "true", delete: "true"}
  - name: secrets
    fields:
      - {name: value, type: string}
  - name: shared
    fields:
      - {name: title, type: string}
      - {name: editors, type: json}
    rules:
      list: "auth != null && auth.id in doc.editors"
      view: "auth != null && auth.id in doc.editors"
      create: "true"
"""

ALICE = Principal("a" * 15, "alice@example.com")
BOB = Principal("b" * 15, "bob@example.com")


@pytest.fixture
def services(make_app):
    return make_app(NOTES_SCHEMA).extensions["alyx"]


def frames(client: Client) -> list[dict[str, Any]]:
    out = [orjson.loads(f) for f in client.outbox]
    client.outbox.clear()
    return out


def new_client(services, principal: Principal | None = None) -> Client:
    client = Client(services.realtime, f"t{id(principal)}", wake=lambda: None)
    client.principal = principal
    return client


def deltas(client: Client) -> list[dict[str, Any]]:
    return [f["payload"] for f in frames(client) if f["type"] == "delta"]


def test_every_committed_write_is_in_the_feed_in_order(services) -> None:
    records, feed = services.records, services.realtime.feed
    with services.db.connection():
        a = records.create("posts", {"title": "a"})
        records.update("posts", a["id"], {"title": "a2"})
        records.delete("posts", a["id"])
        with pytest.raises(AlyxError):
            records.create("posts", {"title": 5})  # refused: no feed row
        changes = feed.read_after(0)
    assert [(c.action, c.record["id"]) for c in changes] == [("create", a["id"]), ("update", a["id"]),
                                                           ("delete", a["id"])]
    assert [c.cursor for c in changes] == sorted({c.cursor for c in changes})
    assert changes[1].previous["title"] == "a" and changes[1].record["title"] == "a2"


def test_a_rolled_back_transaction_leaves_no_change(services) -> None:
    records, feed = services.records, services.realtime.feed
    with services.db.connection():
        with pytest.raises(RuntimeError):
            with services.db.peewee.atomic():
                records.create("posts", {"title": "gone"})
                raise RuntimeError("roll back")
        assert feed.read_after(0) == []
        records.create("posts", {"title": "kept"})
        assert [c.record["title"] for c in feed.read_after(0)] == ["kept"]


def test_pruning_keeps_the_newest_rows_and_expires_old_cursors(services) -> None:
    feed = services.realtime.feed
    feed.max_rows = 3
    feed._next_prune = float("inf")  # no background pruning racing the one under test
    with services.db.connection():
        for i in range(6):
            services.records.create("posts", {"title": f"p{i}"})
        head = feed.head()
        assert feed.prune() == 3
        assert [c.cursor for c in feed.read_after(0)] == [head - 2, head - 1, head]
        feed.check_since(head - 3)  # everything after it is still there
        with pytest.raises(CursorExpired):
            feed.check_since(head - 4)
        with pytest.raises(CursorExpired):
            feed.check_since(head + 1)
        feed.max_rows, feed.retention_seconds = 1000, 0
        feed.prune()
        assert [c.cursor for c in feed.read_after(0)] == [head]  # age-pruned, but the newest stays
        services.records.create("posts", {"title": "next"})
        assert feed.head() == head + 1


def test_a_second_user_never_receives_a_private_record(services) -> None:
    rt, records = services.realtime, services.records
    alice, bob = new_client(services, ALICE), new_client(services, BOB)
    rt.subscribe(alice, {"collection": "notes"}, "1")
    rt.subscribe(bob, {"collection": "notes"}, "2")
    assert frames(alice)[0]["payload"]["docs"] == [] and frames(bob)[0]["type"] == "snapshot"
    with services.db.connection():
        note = records.create("notes", {"text": "mine", "owner": ALICE.id})
    rt.hub.advance()
    assert [d["id"] for d in deltas(alice)[0]["changes"]["inserts"]] == [note["id"]]
    with services.db.connection():
        records.update("notes", note["id"], {"text": "still mine"}, ALICE)
    rt.hub.advance()
    assert deltas(alice)[0]["changes"]["updates"][0]["text"] == "still mine"
    with services.db.connection():
        records.delete("notes", note["id"], ALICE)
        records.create("notes", {"text": "bob's", "owner": BOB.id})
    rt.hub.advance()
    (last,) = deltas(alice)
    assert last["changes"] == {"inserts": [], "updates": [], "deletes": [note["id"]]}
    got = deltas(bob)
    assert len(got) == 1 and got[0]["changes"]["inserts"][0]["text"] == "bob's"
    assert note["id"].encode() not in orjson.dumps(got)  # not even the id of Alice's note


def test_rule_and_filter_transitions_arrive_as_insert_and_delete(services) -> None:
    rt, records = services.realtime, services.records
    anon = new_client(services)
    rt.subscribe(anon, {"collection": "posts", "filter": "views > 10"}, "s")
    sub_id = frames(anon)[0]["payload"]["subscription_id"]
    with services.db.connection():
        post = records.create("posts", {"title": "p", "views": 1})
    rt.hub.advance()
    assert deltas(anon) == []
    steps = [({"views": 20}, "inserts"), ({"title": "q"}, "updates"), ({"public": False}, "deletes"),
             ({"public": True}, "inserts"), ({"views": 3}, "deletes")]
    for body, expected in steps:
        with services.db.connection():
            records.update("posts", post["id"], body)
        rt.hub.advance()
        (delta,) = deltas(anon)
        assert delta["subscription_id"] == sub_id
        kinds = {k: v for k, v in delta["changes"].items() if v}
        assert list(kinds) == [expected], (body, delta)
        if expected == "deletes":
            assert kinds["deletes"] == [post["id"]]  # an id the subscriber had seen, nothing more
        else:
            assert kinds[expected][0]["id"] == post["id"]


def test_a_private_collection_refuses_anonymous_subscribers(services) -> None:
    rt = services.realtime
    with pytest.raises(AlyxError) as err:
        rt.subscribe(new_client(services), {"collection": "notes"})
    assert err.value.code == "unauthorized"
    with pytest.raises(AlyxError) as err:
        rt.subscribe(new_client(services, ALICE), {"collection": "secrets"})
    assert err.value.code == "forbidden"
    admin = new_client(services, Principal("c" * 15, "root@example.com", role="admin"))
    rt.subscribe(admin, {"collection": "secrets"})
    assert frames(admin)[0]["type"] == "snapshot"


def test_bad_subscriptions_are_errors_with_the_rest_dialect(services) -> None:
    rt, client = services.realtime, new_client(services)
    for payload, code in [({"collection": "nope"}, "not_found"), ({}, "bad_request"),
                          ({"collection": "posts", "filter": "nope == 1"}, "bad_request"),
                          ({"collection": "posts", "filter": "views >"}, "bad_request"),
                          ({"collection": "posts", "sort": "-nope"}, "bad_request"),
                          ({"collection": "posts", "limit": 0}, "bad_request"),
                          ({"collection": "posts", "since": -1}, "bad_request"),
                          ({"collection": "posts", "since": 10**9}, "cursor_expired")]:
        with pytest.raises(AlyxError) as err:
            rt.subscribe(client, payload)
        assert err.value.code == code, payload
    assert client.subscriptions == {}


def test_snapshot_honours_filter_sort_limit_and_rules(services) -> None:
    rt, records = services.realtime, services.records
    with services.db.connection():
        for i in range(5):
            records.create("posts", {"title": f"p{i}", "views": i, "public": i != 3})
    client = new_client(services)
    rt.subscribe(client, {"collection": "posts", "filter": "views >= 1", "sort": "-views", "limit": 2}, 7)
    (snap,) = frames(client)
    assert snap["id"] == 7
    assert [d["title"] for d in snap["payload"]["docs"]] == ["p4", "p2"]  # p3 is not public
    with services.db.connection():
        assert snap["payload"]["total"] == 3 and snap["payload"]["cursor"] == rt.feed.head()


def test_resume_from_since_replays_exactly_what_was_missed(services) -> None:
    rt, records = services.realtime, services.records
    first = new_client(services)
    rt.subscribe(first, {"collection": "posts"})
    cursor = frames(first)[0]["payload"]["cursor"]
    with services.db.connection():
        seen = records.create("posts", {"title": "seen"})
    rt.hub.advance()
    (delta,) = deltas(first)
    cursor = delta["cursor"]
    rt.disconnect(first)
    with services.db.connection():
        missed = [records.create("posts", {"title": f"m{i}"})["id"] for i in range(3)]
    rt.hub.advance()  # dispatched while nobody listened
    again = new_client(services)
    rt.subscribe(again, {"collection": "posts", "since": cursor})
    snap, *replayed = frames(again)
    assert snap["payload"]["resumed"] is True and snap["payload"]["cursor"] == cursor
    ids = [d["id"] for f in replayed for d in f["payload"]["changes"]["inserts"]]
    assert ids == missed and seen["id"] not in ids
    with services.db.connection():
        last = records.create("posts", {"title": "live"})
    rt.hub.advance()
    assert [d["id"] for d in deltas(again)[0]["changes"]["inserts"]] == [last["id"]]


def test_resume_reads_the_feed_when_memory_does_not_reach_back(services) -> None:
    rt, records = services.realtime, services.records
    with services.db.connection():
        old = records.create("posts", {"title": "old"})
        rt.hub.advance()
        rt.hub.recent.clear()
        rt.hub.recent_from = rt.hub.position  # as if the worker had started after these changes
        newer = records.create("posts", {"title": "newer"})
    client = new_client(services)
    rt.subscribe(client, {"collection": "posts", "since": 0})
    ids = [d["id"] for f in frames(client)[1:] for d in f["payload"]["changes"]["inserts"]]
    assert ids == [old["id"], newer["id"]]
    rt.hub.advance()
    assert deltas(client) == []  # `newer` is not sent twice


def test_coalescing_merges_a_batch_per_subscriber() -> None:
    a = {"id": "a", "v": 1}
    merged = merge_changes([("insert", a), ("update", {"id": "a", "v": 2}), ("insert", {"id": "b"}),
                            ("delete", "b"), ("update", {"id": "c"}), ("delete", "c"), ("delete", "d"),
                            ("insert", {"id": "d", "v": 9})])
    assert merged == {"inserts": [{"id": "a", "v": 2}], "updates": [{"id": "d", "v": 9}], "deletes": ["c"]}
    assert merge_changes([("insert", {"id": "x"}), ("delete", "x")]) is None


def test_a_slow_consumer_is_disconnected_without_touching_others(services) -> None:
    rt, records = services.realtime, services.records
    slow, fine = new_client(services), new_client(services)
    for c in (slow, fine):
        rt.subscribe(c, {"collection": "posts"})
        frames(c)
    limit = services.config.realtime_send_queue_max
    slow.outbox.extend([b"{}"] * limit)
    with services.db.connection():
        records.create("posts", {"title": "x"})
    rt.hub.advance()
    assert slow.close_request is not None and slow.close_request[0] == CLOSE_SLOW_CONSUMER
    assert not slow.outbox and slow.subscriptions == {}  # queue dropped, subscriptions detached
    assert len(deltas(fine)) == 1


def test_subscription_and_connection_limits(services) -> None:
    rt = services.realtime
    client = new_client(services)
    for _ in range(services.config.realtime_max_subscriptions):
        rt.subscribe(client, {"collection": "posts"})
    with pytest.raises(AlyxError) as err:
        rt.subscribe(client, {"collection": "posts"})
    assert err.value.code == "too_many_subscriptions"


def test_an_expired_token_ends_subscriptions_with_an_error(services) -> None:
    rt = services.realtime
    alice = new_client(services, ALICE)
    rt.subscribe(alice, {"collection": "notes"})
    frames(alice)
    rt.expire(alice)
    (error,) = frames(alice)
    assert error["type"] == "error" and error["payload"]["code"] == "token_expired"
    assert alice.subscriptions == {} and alice.principal is None
    with services.db.connection():
        services.records.create("notes", {"text": "x", "owner": ALICE.id})
    services.realtime.hub.advance()
    assert frames(alice) == []


def test_redis_broker_carries_changes(services) -> None:
    import uuid

    broker = RedisBroker("redis://127.0.0.1:6379/0", f"alyx:test:{uuid.uuid4().hex}")
    received: list[Change | None] = []
    got = threading.Event()
    ready = threading.Event()

    def deliver(change: Change | None) -> None:
        received.append(change)
        if change is not None:
            got.set()

    threading.Thread(target=broker.listen, args=(deliver, ready), daemon=True).start()
    assert ready.wait(10)
    broker.publish(Change(42, "posts", "create", {"id": "x" * 15, "title": "t"}))
    assert got.wait(10)
    change = [c for c in received if c is not None][0]
    assert (change.cursor, change.collection, change.record["title"]) == (42, "posts", "t")


def test_subscribers_racing_to_create_an_audience_both_stay_live(services) -> None:
    from alyx.realtime import Subscription

    rt, records = services.realtime, services.records
    coll = records.collection("posts")
    first, second = new_client(services), new_client(services)
    # Both were built while neither was registered (as when snapshots of two sockets interleave).
    audiences = [rt.hub.audience_for(coll, None, None, None) for _ in range(2)]
    assert audiences[0] is not audiences[1]
    for client, audience in zip((first, second), audiences, strict=True):
        sub = Subscription("s1", client, audience)
        client.subscriptions[sub.id] = sub
        rt.hub.attach(sub, 0)
    with services.db.connection():
        post = records.create("posts", {"title": "both"})
    rt.hub.advance()
    for client in (first, second):
        assert [d["id"] for d in deltas(client)[0]["changes"]["inserts"]] == [post["id"]]


def test_rules_sql_cannot_express_apply_to_snapshots_and_deltas(services) -> None:
    rt, records = services.realtime, services.records
    assert not services.access.rule("shared", "list").pushdown  # `in` over a json list: checked per record
    with services.db.connection():
        mine = records.create("shared", {"title": "mine", "editors": [ALICE.id]})
        records.create("shared", {"title": "bob's", "editors": [BOB.id]})
    alice = new_client(services, ALICE)
    rt.subscribe(alice, {"collection": "shared"})
    (snap,) = frames(alice)
    assert [d["id"] for d in snap["payload"]["docs"]] == [mine["id"]] and snap["payload"]["total"] == 1
    with services.db.connection():
        records.create("shared", {"title": "bob's too", "editors": [BOB.id]})
        later = records.create("shared", {"title": "ours", "editors": [BOB.id, ALICE.id]})
    rt.hub.advance()
    (delta,) = deltas(alice)
    assert [d["id"] for d in delta["changes"]["inserts"]] == [later["id"]]


def test_the_tailer_reads_a_burst_of_commits_in_one_coalescing_window(make_app) -> None:
    """Commits poke the tailer (no polling here); pokes inside the window are read in one batch."""
    import time

    env = {"ALYX_REALTIME_COALESCE_MS": "1000", "ALYX_REALTIME_POLL_INTERVAL_MS": "600000"}
    services = make_app(NOTES_SCHEMA, env=env).extensions["alyx"]
    rt = services.realtime
    client = new_client(services)
    rt.subscribe(client, {"collection": "posts"})
    rt.hub.ensure_started()
    try:
        with services.db.connection():
            for n in range(3):
                services.records.create("posts", {"title": f"burst {n}"})
            head = rt.feed.head()
        deadline = time.monotonic() + 10
        while rt.hub.position < head and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt.hub.position == head and rt.hub.batches == 1
        (delta,) = deltas(client)
        assert [d["title"] for d in delta["changes"]["inserts"]] == ["burst 0", "burst 1", "burst 2"]
    finally:
        rt.hub.tailer.stop()


def test_a_write_to_a_reader_that_never_reads_times_out_and_cuts_the_socket() -> None:
    """A blocked write would hold the connection's greenlet forever (issue 15 item 7)."""
    import socket
    import time

    from alyx.realtime.websocket import SerialSocket

    ours, peer = socket.socketpair()
    try:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock = SerialSocket(ours, write_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(OSError):
            sock.send(b"x" * 4_000_000)  # far more than the socket buffers hold
        assert time.monotonic() - started < 5
        with pytest.raises(OSError):  # cut: later writes fail at once
            sock.send(b"y")
    finally:
        ours.close()
        peer.close()


def test_a_slow_consumer_over_its_bound_cuts_a_blocked_write_soon() -> None:
    import socket
    import time

    from alyx.realtime.websocket import SerialSocket

    ours, peer = socket.socketpair()
    try:
        sock = SerialSocket(ours, write_timeout=60)
        sock.cut_at = time.monotonic() + 0.3  # what an overflowing send queue asks for
        started = time.monotonic()
        with pytest.raises(OSError):
            sock.send(b"x" * 4_000_000)
        assert time.monotonic() - started < 5
    finally:
        ours.close()
        peer.close()


def test_an_overflowing_send_queue_tells_the_transport(services) -> None:
    told = []
    client = new_client(services)
    client.on_overflow = lambda: told.append(True)
    for _ in range(services.config.realtime_send_queue_max + 1):
        client.push(b"{}")
    assert told == [True] and client.close_request is not None and client.close_request[0] == CLOSE_SLOW_CONSUMER


def test_age_pruning_drops_the_rows_before_the_first_one_inside_the_retention(services) -> None:
    feed = services.realtime.feed
    feed._next_prune = float("inf")
    feed.max_rows, feed.retention_seconds = 1000, 3600
    with services.db.connection():
        for i in range(5):
            services.records.create("posts", {"title": f"p{i}"})
        head = feed.head()
        old = head - 2  # the three oldest are two hours old
        feed.model.update(created_at=utcnow() - dt.timedelta(hours=2)).where(feed.model.id <= old).execute()
        assert feed.prune() == 3
        assert [c.cursor for c in feed.read_after(0)] == [head - 1, head]
        assert feed.prune() == 0
        indexed = {tuple(index.columns) for index in services.db.peewee.get_indexes("_alyx_changes")}
    assert ("created_at",) not in indexed  # system migration 5
