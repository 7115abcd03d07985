"""POST /api/batch (alyx/batch.py): one transaction, all or nothing, each operation through the records
service as the caller; changes, async hooks and blob deletes only after the commit. SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from alyx.errors import AlyxError
from alyx.realtime import Client
from tests.conftest import TEST_ENV, AppMaker
from tests.harness import eventually
from tests.helpers import assert_error

SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: title, type: string, required: true, max: 50}
      - {name: slug, type: string, unique: true}
      - {name: owner, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: comments
    fields:
      - {name: post, type: relation, collection: posts, on_delete: cascade, required: true}
      - {name: text, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: guarded
    fields:
      - {name: title, type: string}
      - {name: owner, type: string}
    rules: {list: "true", view: "true", create: "auth != null", update: "auth != null && auth.id == doc.owner",
            delete: "auth != null && auth.id == doc.owner"}
  - name: hooked
    fields:
      - {name: title, type: string}
      - {name: slug, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: albums
    fields:
      - {name: title, type: string}
      - {name: cover, type: file}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""
ECHO = "def handler(req, res):\n    return res.json({'ok': True})\n"
SYNC_GUARD = '''
def handler(req, res):
    doc = req.input["document"]
    if doc.get("title") == "refused":
        return res.status(422).json({"error": {"code": "title_refused", "message": "Not that title.",
                                                "details": {"title": ["refused by a hook"]}}})
    return res.json({"changes": {"slug": (doc.get("title") or "").lower()}})
'''
HOOK = "runtime: python\nhooks:\n  - {{type: database, source: {source}, action: {action}, mode: {mode}}}\n"
FUNCTIONS = {
    "onpost/manifest.yaml": HOOK.format(source="posts", action="[insert, update, delete]", mode="async"),
    "onpost/index.py": ECHO,
    "guard/manifest.yaml": HOOK.format(source="hooked", action="[insert, update]", mode="sync"),
    "guard/index.py": SYNC_GUARD,
}
ADMIN = {"X-Test-User": "admin"}
USER = {"X-Test-User": "user"}  # tests.conftest.USER: id user00000000001

BatchApp = Callable[..., Flask]


@pytest.fixture
def make(tmp_path: Path, database_env: dict[str, str]) -> Iterator[BatchApp]:
    maker = AppMaker(tmp_path, {**TEST_ENV, "ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_EVENTS_POLL_MS": "50",
                                **database_env}, test_users=True)

    def factory(config: str = "", env: dict[str, str] | None = None, files: dict[str, str] | None = None) -> Flask:
        return maker(SCHEMA, config, files=files or {}, env=env)

    yield factory
    maker.close()


@pytest.fixture
def app(make: BatchApp) -> Flask:
    return make()


class Seen:
    """What the records service's listeners saw, and whether a transaction was open at the time."""

    def __init__(self, app: Flask) -> None:
        svc = app.extensions["alyx"]
        self.events: list[tuple[str, str, bool]] = []
        svc.records.subscribe(lambda e: self.events.append((e.collection, e.action, svc.db.peewee.in_transaction())))


def batch(client: Any, *ops: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/batch", json={"requests": list(ops)}, headers=headers)


def op(method: str, url: str, body: Any = None) -> dict[str, Any]:
    return {"method": method, "url": url, **({"body": body} if body is not None else {})}


def titles(client: Any, collection: str = "posts") -> list[str]:
    return [r["title"] for r in client.get(f"/api/collections/{collection}?sort=title").get_json()["items"]]


def feed_head(app: Flask) -> int:
    svc = app.extensions["alyx"]
    with svc.db.connection():
        return int(svc.realtime.feed.head())


def executions(app: Flask) -> list[dict[str, Any]]:
    resp = app.test_client().get("/api/executions", headers=ADMIN)
    assert resp.status_code == 200, resp.data
    return list(resp.get_json()["items"])


def jobs(app: Flask) -> list[dict[str, Any]]:
    resp = app.test_client().get("/api/jobs", headers=ADMIN)
    assert resp.status_code == 200, resp.data
    return list(resp.get_json()["items"])


# -- success ------------------------------------------------------------------------------------
def test_create_update_delete_and_upsert_in_one_batch(app: Flask) -> None:
    c = app.test_client()
    seen = Seen(app)
    old = c.post("/api/collections/posts", json={"title": "old", "slug": "old"}).get_json()
    gone = c.post("/api/collections/posts", json={"title": "gone"}).get_json()
    seen.events.clear()
    resp = batch(c,
                 op("POST", "/api/collections/posts", {"id": "p00000000000001", "title": "new"}),
                 op("POST", "/api/collections/comments", {"post": "p00000000000001", "text": "first"}),
                 op("PATCH", f"/api/collections/posts/{old['id']}", {"title": "old, edited"}),
                 op("DELETE", f"/api/collections/posts/{gone['id']}"),
                 op("PUT", "/api/collections/posts", {"id": old["id"], "slug": "upserted"}),
                 op("PUT", "/api/collections/posts", {"id": "p00000000000002", "title": "upsert-created"}),
                 op("PUT", "/api/collections/posts", {"title": "upsert without id"}))
    assert resp.status_code == 200, resp.get_json()
    results = resp.get_json()
    assert [r["status"] for r in results] == [201, 201, 200, 204, 200, 201, 201]
    assert results[0]["body"]["id"] == "p00000000000001" and results[1]["body"]["post"] == "p00000000000001"
    assert results[3]["body"] is None
    assert results[4]["body"] == {**results[2]["body"], "slug": "upserted",
                                  "updated_at": results[4]["body"]["updated_at"]}
    assert results[5]["body"]["id"] == "p00000000000002" and len(results[6]["body"]["id"]) == 15
    assert titles(c) == ["new", "old, edited", "upsert without id", "upsert-created"]
    # listeners ran once per write, all after the outermost commit
    assert [(coll, action) for coll, action, _ in seen.events] == [
        ("posts", "create"), ("comments", "create"), ("posts", "update"), ("posts", "delete"),
        ("posts", "update"), ("posts", "create"), ("posts", "create")]
    assert not any(in_transaction for *_, in_transaction in seen.events)


def test_a_batch_is_journalled_in_the_change_feed_and_queues_async_hooks(make: BatchApp) -> None:
    app = make(files=FUNCTIONS)
    c = app.test_client()
    before = feed_head(app)
    resp = batch(c, *(op("POST", "/api/collections/posts", {"title": f"t{i}"}) for i in range(3)))
    assert resp.status_code == 200, resp.get_json()
    assert feed_head(app) - before == 3
    queued = jobs(app)
    assert sorted(j["payload"]["input"]["document"]["title"] for j in queued) == ["t0", "t1", "t2"]


def test_a_batchs_change_feed_rows_follow_its_operations_in_order(app: Flask) -> None:
    """On PostgreSQL the rows go in as one INSERT before the commit: their cursors still ascend in the
    order of the operations, and each row is its own record's."""
    svc = app.extensions["alyx"]
    c = app.test_client()
    before = feed_head(app)
    resp = batch(c, *(op("POST", "/api/collections/posts", {"title": f"t{i}"}) for i in range(7)),
                 op("DELETE", "/api/collections/posts/" + c.post("/api/collections/posts", json={"title": "x"})
                    .get_json()["id"]))
    assert resp.status_code == 200, resp.get_json()
    ids = [r["body"]["id"] for r in resp.get_json()[:7]]
    with svc.db.connection():
        changes = svc.realtime.feed.read_after(before + 1)  # after the single create of "x"
    assert [(ch.action, ch.record["id"]) for ch in changes][:7] == [("create", i) for i in ids]
    assert [ch.action for ch in changes] == ["create"] * 7 + ["delete"]
    cursors = [ch.cursor for ch in changes]
    assert cursors == sorted(cursors) and len(set(cursors)) == 8


def waiting_writers(app: Flask) -> int:
    """PostgreSQL sessions waiting for a lock (on SQLite, writers wait on the process's write lock: 0)."""
    svc = app.extensions["alyx"]
    if svc.db.is_sqlite:
        return 0
    with svc.db.connection():
        return int(svc.db.peewee.execute_sql(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON l.database = d.oid"
            " WHERE NOT l.granted AND d.datname = current_database()").fetchone()[0])


def hold_after(app: Flask, thread: str, title: str) -> tuple[threading.Event, threading.Event]:
    """A journal writer (inside the transaction, after the change feed's) that holds thread ``thread``'s
    write of a record titled ``title`` until released: (holding, release)."""
    holding, release = threading.Event(), threading.Event()

    def hold(event: Any) -> None:
        if threading.current_thread().name == thread and event.record["title"] == title:
            holding.set()
            release.wait(60)

    app.extensions["alyx"].records.journal(hold)
    return holding, release


def in_thread(name: str, answers: dict[str, Any], call: Callable[[], Any]) -> threading.Thread:
    def run() -> None:
        resp = call()
        answers[name] = (resp.status_code, resp.get_json())

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_two_batches_writing_the_same_records_in_opposite_orders_serialize(app: Flask, backend: str) -> None:
    """Batch A holds r1 (and the change feed's lock) when batch B starts on r2 then r1: B must wait
    for A before locking anything, or A (wanting r2) and B (wanting the feed lock) deadlock (a 503)."""
    c = app.test_client()
    r1, r2 = (c.post("/api/collections/posts", json={"title": t}).get_json()["id"] for t in ("one", "two"))
    holding, release = hold_after(app, "a", "a1")
    answers: dict[str, Any] = {}

    def run(name: str, first: str, second: str) -> Callable[[], Any]:
        return lambda: batch(app.test_client(), op("PATCH", f"/api/collections/posts/{first}", {"title": f"{name}1"}),
                             op("PATCH", f"/api/collections/posts/{second}", {"title": f"{name}2"}))

    a = in_thread("a", answers, run("a", r1, r2))
    assert holding.wait(60)
    b = in_thread("b", answers, run("b", r2, r1))
    if backend == "postgres":
        eventually(lambda: waiting_writers(app) >= 1, "batch B waiting for a lock")
    release.set()
    a.join(60)
    b.join(60)
    assert answers["a"][0] == 200 and answers["b"][0] == 200, answers
    got = {r["id"]: r["title"] for r in c.get("/api/collections/posts").get_json()["items"]}
    assert got == {r1: "b2", r2: "b1"}  # B ran after A, whole


def test_a_single_write_and_a_batch_on_the_same_record_serialize(app: Flask, backend: str) -> None:
    """Batch B holds the feed lock (and r2) when a single PATCH of r1 starts; B then writes r1."""
    c = app.test_client()
    r1, r2 = (c.post("/api/collections/posts", json={"title": t}).get_json()["id"] for t in ("one", "two"))
    holding, release = hold_after(app, "b", "b2")
    answers: dict[str, Any] = {}
    b = in_thread("b", answers, lambda: batch(app.test_client(),
                                              op("PATCH", f"/api/collections/posts/{r2}", {"title": "b2"}),
                                              op("PATCH", f"/api/collections/posts/{r1}", {"title": "b1"})))
    assert holding.wait(60)
    single = in_thread("s", answers, lambda: app.test_client().patch(f"/api/collections/posts/{r1}",
                                                                      json={"title": "s"}))
    if backend == "postgres":  # (on SQLite it waits for the process's write lock, or has not started yet)
        eventually(lambda: waiting_writers(app) >= 1, "the single write waiting for the feed lock")
    release.set()
    b.join(60)
    single.join(60)
    assert answers["b"][0] == 200 and answers["s"][0] == 200, answers


def test_realtime_subscribers_get_the_batch_after_its_commit_and_nothing_of_a_rollback(app: Flask) -> None:
    svc = app.extensions["alyx"]
    subscriber = Client(svc.realtime, "batch-test", wake=lambda: None)
    svc.realtime.subscribe(subscriber, {"collection": "posts"}, "1")
    subscriber.outbox.clear()  # the snapshot
    c = app.test_client()
    done = batch(c, op("POST", "/api/collections/posts", {"title": "a"}), op("POST", "/api/collections/posts",
                                                                             {"title": "b"}))
    assert done.status_code == 200
    failed = batch(c, op("POST", "/api/collections/posts", {"title": "c"}), op("POST", "/api/collections/posts", {}))
    assert_error(failed, 422)
    svc.realtime.hub.advance()
    changes = [orjson.loads(f)["payload"]["changes"] for f in subscriber.outbox]
    inserted = [doc["title"] for change in changes for doc in change["inserts"]]
    assert inserted == ["a", "b"]  # "c" was rolled back: never sent


def test_on_sqlite_a_batch_is_one_begin_immediate_without_savepoints(tmp_path: Path) -> None:
    maker = AppMaker(tmp_path, dict(TEST_ENV))
    try:
        svc = maker(SCHEMA).extensions["alyx"]
        statements: list[str] = []
        with svc.db.connection():
            svc.db.peewee.connection().set_trace_callback(statements.append)
            svc.batch.run({"requests": [op("POST", "/api/collections/posts", {"title": str(i)}) for i in range(3)]},
                          None)
            svc.db.peewee.connection().set_trace_callback(None)
        words = [s.split()[0].upper() for s in statements]
        assert words.count("BEGIN") == 1 and statements[words.index("BEGIN")].upper() == "BEGIN IMMEDIATE"
        assert words.count("COMMIT") == 1 and "SAVEPOINT" not in words and "ROLLBACK" not in words
        assert words.count("INSERT") == 6  # three records and their three change-feed rows
    finally:
        maker.close()


# -- all or nothing -----------------------------------------------------------------------------
@pytest.mark.parametrize("failing,status,code", [
    (op("POST", "/api/collections/posts", {"title": "x" * 51}), 422, "validation_failed"),
    (op("POST", "/api/collections/posts", {"title": "dup", "slug": "taken"}), 409, "conflict"),
    (op("PATCH", "/api/collections/posts/nosuchrecord00", {"title": "x"}), 404, "not_found"),
    (op("DELETE", "/api/collections/nosuch/abc"), 404, "not_found"),
    (op("POST", "/api/collections/comments", {"post": "nosuchrecord00", "text": "x"}), 422, "validation_failed"),
    (op("POST", "/api/collections/guarded", {"title": "anonymous"}), 403, "forbidden"),
], ids=["invalid", "unique", "missing-record", "missing-collection", "missing-relation", "rule"])
def test_the_nth_failure_rolls_everything_back(make: BatchApp, failing: dict[str, Any], status: int,
                                               code: str) -> None:
    app = make(files=FUNCTIONS)
    c = app.test_client()
    seen = Seen(app)
    kept = c.post("/api/collections/posts", json={"title": "kept", "slug": "taken"}).get_json()
    doomed = c.post("/api/collections/posts", json={"title": "doomed"}).get_json()
    seen.events.clear()
    eventually(lambda: all(j["status"] == "done" for j in jobs(app)), what="the setup's hook jobs")
    jobs_before, head_before = len(jobs(app)), feed_head(app)
    resp = batch(c,
                 op("POST", "/api/collections/posts", {"title": "first"}),
                 op("PATCH", f"/api/collections/posts/{kept['id']}", {"title": "kept, edited"}),
                 op("DELETE", f"/api/collections/posts/{doomed['id']}"),
                 failing,
                 op("POST", "/api/collections/posts", {"title": "never reached"}))
    error = assert_error(resp, status, code)
    assert error["details"]["index"] == 3
    assert error["details"]["error"]["code"] == code
    assert error["message"].startswith(f"Operation 3 ({failing['method']} {failing['url']}) failed: ")
    assert titles(c) == ["doomed", "kept"]  # the earlier operations are not visible: nothing happened
    assert seen.events == []  # no listener (realtime, job wake-up) saw a change
    assert feed_head(app) == head_before  # no change-feed row
    assert len(jobs(app)) == jobs_before  # no async hook job


def test_validation_details_of_the_failing_operation_are_kept(app: Flask) -> None:
    error = assert_error(batch(app.test_client(), op("POST", "/api/collections/posts", {"title": "ok"}),
                               op("POST", "/api/collections/posts", {"slug": "no title"})), 422, "validation_failed")
    assert error["details"] == {"index": 1, "error": {
        "code": "validation_failed", "message": "The record is not valid.",
        "details": {"title": ["Missing data for required field."]}}}


# -- rules and hooks per operation ------------------------------------------------------------
def test_each_operation_is_checked_against_its_rule_as_the_caller(app: Flask) -> None:
    c = app.test_client()
    mine = batch(c, op("POST", "/api/collections/guarded", {"title": "mine", "owner": "user00000000001"}),
                 op("POST", "/api/collections/guarded", {"title": "theirs", "owner": "someone"}), headers=USER)
    assert mine.status_code == 200, mine.get_json()
    ids = [r["body"]["id"] for r in mine.get_json()]
    refused = batch(c, op("PATCH", f"/api/collections/guarded/{ids[0]}", {"title": "mine, edited"}),
                    op("DELETE", f"/api/collections/guarded/{ids[1]}"), headers=USER)
    error = assert_error(refused, 403, "forbidden")
    assert error["details"]["index"] == 1
    assert titles(c, "guarded") == ["mine", "theirs"]
    assert_error(batch(c, op("POST", "/api/collections/guarded", {"title": "x"})), 403, "forbidden")  # anonymous
    assert batch(c, op("DELETE", f"/api/collections/guarded/{ids[1]}"), headers=ADMIN).status_code == 200


def test_a_sync_hook_runs_per_operation_and_may_refuse_one(make: BatchApp) -> None:
    app = make(files=FUNCTIONS)
    c = app.test_client()
    done = batch(c, op("POST", "/api/collections/hooked", {"title": "One"}),
                 op("POST", "/api/collections/hooked", {"title": "Two"}))
    assert done.status_code == 200, done.get_json()
    assert [r["body"]["slug"] for r in done.get_json()] == ["one", "two"]  # each hook's change is stored
    refused = batch(c, op("POST", "/api/collections/hooked", {"title": "Three"}),
                    op("POST", "/api/collections/hooked", {"title": "refused"}))
    error = assert_error(refused, 422, "title_refused")
    assert error["details"] == {"index": 1, "error": {"code": "title_refused", "message": "Not that title.",
                                                      "details": {"title": ["refused by a hook"]}}}
    assert titles(c, "hooked") == ["One", "Two"]
    runs = [r for r in executions(app) if r["function_id"] == "guard"]
    assert len(runs) == 4  # the refusing hook's run is recorded: hooks run before the batch's transaction
    made_here = batch(c, op("POST", "/api/collections/hooked", {"id": "h00000000000001", "title": "Four"}),
                      op("PATCH", "/api/collections/hooked/h00000000000001", {"title": "Five"}))
    error = assert_error(made_here, 409, "conflict")
    assert error["details"]["index"] == 1 and "earlier operation" in error["message"]
    assert titles(c, "hooked") == ["One", "Two"]


def test_guards_run_before_the_transaction_in_order_and_their_changes_are_written(app: Flask) -> None:
    svc = app.extensions["alyx"]
    calls: list[tuple[str, str, bool]] = []

    def guard(collection: str, action: str, document: dict[str, Any], previous: dict[str, Any] | None,
              writer: Any) -> Any:
        calls.append((action, document.get("title") or "", svc.db.peewee.in_transaction()))
        if document.get("title") == "nope":
            raise AlyxError("refused", "Not that one.", 403)
        return {"slug": f"{action}-{document.get('title')}"} if action != "delete" else None

    svc.records.guard(guard, lambda collection, action: collection == "posts")
    c = app.test_client()
    kept = c.post("/api/collections/posts", json={"title": "kept"}).get_json()
    calls.clear()
    done = batch(c, op("POST", "/api/collections/posts", {"title": "a"}),
                 op("PATCH", f"/api/collections/posts/{kept['id']}", {"title": "b"}),
                 op("PUT", "/api/collections/posts", {"id": kept["id"], "title": "c"}),
                 op("POST", "/api/collections/comments", {"post": kept["id"], "text": "unguarded"}))
    assert done.status_code == 200, done.get_json()
    assert [r["body"].get("slug") for r in done.get_json()[:3]] == ["create-a", "update-b", "update-c"]
    assert calls == [("create", "a", False), ("update", "b", False), ("update", "c", False)]
    calls.clear()
    refused = batch(c, op("DELETE", f"/api/collections/posts/{kept['id']}"), op("POST", "/api/collections/posts",
                                                                                {"title": "nope"}))
    assert assert_error(refused, 403, "refused")["details"]["index"] == 1
    assert calls == [("delete", "c", False), ("create", "nope", False)]
    assert titles(c) == ["a", "c"]


def test_upsert_on_the_auth_collection_never_lets_a_client_choose_an_id(app: Flask) -> None:
    c = app.test_client()
    chosen = batch(c, op("PUT", "/api/collections/users", {"id": "chosen000000001", "email": "a@example.com"}),
                    headers=ADMIN)
    error = assert_error(chosen, 422, "validation_failed")
    assert error["details"]["index"] == 0 and "id" in error["details"]["error"]["details"]
    made = batch(c, op("PUT", "/api/collections/users", {"email": "b@example.com"}),
                 headers=ADMIN)
    assert made.status_code == 200, made.get_json()
    user = made.get_json()[0]
    assert user["status"] == 201 and user["body"]["id"] != "chosen000000001"
    renamed = batch(c, op("PUT", "/api/collections/users", {"id": user["body"]["id"], "verified": True}),
                    headers=ADMIN)
    assert renamed.status_code == 200 and renamed.get_json()[0]["status"] == 200
    assert renamed.get_json()[0]["body"]["verified"] is True


# -- files --------------------------------------------------------------------------------------
def test_a_batch_delete_removes_blobs_after_commit_and_a_rollback_keeps_them(app: Flask) -> None:
    c = app.test_client()
    storage = app.extensions["alyx"].storage
    created = [c.post("/api/collections/albums", data={"title": t, "cover": (io.BytesIO(b"blob " + t.encode()),
                                                                             f"{t}.txt")},
                      content_type="multipart/form-data").get_json() for t in ("a", "b")]
    assert len(list(storage.list())) == 2
    failed = batch(c, op("DELETE", f"/api/collections/albums/{created[0]['id']}"),
                   op("POST", "/api/collections/albums", {"title": 5}))
    assert assert_error(failed, 422)["details"]["index"] == 1
    assert len(list(storage.list())) == 2  # rolled back: no blob deleted
    assert batch(c, op("DELETE", f"/api/collections/albums/{created[0]['id']}")).status_code == 200
    assert [b.key.split("/")[1] for b in storage.list()] == [created[1]["id"]]


# -- limits and hostile input ---------------------------------------------------------------------
def test_more_operations_than_api_max_batch_is_413(make: BatchApp) -> None:
    app = make(env={"ALYX_API_MAX_BATCH": "3"})
    c = app.test_client()
    ok = batch(c, *(op("POST", "/api/collections/posts", {"title": str(i)}) for i in range(3)))
    assert ok.status_code == 200
    error = assert_error(batch(c, *(op("POST", "/api/collections/posts", {"title": str(i)}) for i in range(4))),
                         413, "too_large")
    assert "requests" in error["details"]
    assert len(titles(c)) == 3


def test_the_default_limit_is_100_and_the_body_limit_holds(make: BatchApp) -> None:
    app = make(env={"ALYX_SERVER_MAX_BODY_BYTES": "200000"})
    c = app.test_client()
    assert_error(batch(c, *(op("DELETE", "/api/collections/posts/abc") for _ in range(101))), 413, "too_large")
    huge = json.dumps({"requests": [op("POST", "/api/collections/posts", {"title": "x" * 40})] * 5000})
    assert_error(c.post("/api/batch", data=huge, content_type="application/json"), 413, "too_large")


@pytest.mark.parametrize("payload,where", [
    ([], "requests"),
    ({}, "requests"),
    ({"requests": {}}, "requests"),
    ({"requests": []}, "requests"),
    ({"requests": "x"}, "requests"),
    ({"requests": [op("POST", "/api/collections/posts", {"title": "x"})], "atomic": False}, "atomic"),
    ({"requests": [1]}, "requests.0"),
    ({"requests": [None]}, "requests.0"),
    ({"requests": [{**op("POST", "/api/collections/posts", {"title": "x"}), "headers": {}}]}, "requests.0.headers"),
    ({"requests": [op("GET", "/api/collections/posts")]}, "requests.0.method"),
    ({"requests": [op("OPTIONS", "/api/collections/posts")]}, "requests.0.method"),
    ({"requests": [{"method": 1, "url": "/api/collections/posts"}]}, "requests.0.method"),
    ({"requests": [{"method": "POST", "body": {}}]}, "requests.0.url"),
    ({"requests": [{"method": "POST", "url": ["/api/collections/posts"], "body": {}}]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/batch", {"requests": []})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/../users", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts?fields=id", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts?expand=author", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts/", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/po%73ts", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "http://evil.example/api/collections/posts", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/auth/register", {"email": "a@b.co"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts\n", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("PATCH", "/api/collections/posts/bulk", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("PATCH", "/api/collections/posts", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts/abc", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("PUT", "/api/collections/posts/abc", {"title": "x"})]}, "requests.0.url"),
    ({"requests": [op("POST", "/api/collections/posts")]}, "requests.0.body"),
    ({"requests": [op("POST", "/api/collections/posts", [1])]}, "requests.0.body"),
    ({"requests": [op("PATCH", "/api/collections/posts/abc", "x")]}, "requests.0.body"),
    ({"requests": [op("DELETE", "/api/collections/posts/abc", {"title": "x"})]}, "requests.0.body"),
    ({"requests": [op("POST", "/api/collections/posts", {"title": "ok"}), op("TRACE", "/x")]}, "requests.1.method"),
])
def test_malformed_batches_are_400_naming_the_place(app: Flask, payload: Any, where: str) -> None:
    c = app.test_client()
    error = assert_error(c.post("/api/batch", json=payload), 400)
    assert where in error["details"], error
    assert titles(c) == []  # nothing of a malformed batch runs, not even its valid operations


@pytest.mark.parametrize("raw,content_type,status", [
    (b'{"requests": [', "application/json", 400),
    (b"", "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b'{"requests": []}', "text/plain", 415),
    (b"requests=1", "application/x-www-form-urlencoded", 415),
    (b'{"requests": [{"method": "POST", "url": "/api/collections/posts", "body": {"title": NaN}}]}',
     "application/json", 400),
])
def test_bodies_that_are_not_json_objects(app: Flask, raw: bytes, content_type: str, status: int) -> None:
    assert_error(app.test_client().post("/api/batch", data=raw, content_type=content_type), status)


def test_hostile_bodies_inside_operations_never_500(app: Flask) -> None:
    c = app.test_client()
    for body in ({"title": "\x00"}, {"title": {"$gt": ""}}, {"title": ["x"]}, {"id": "../../etc", "title": "x"},
                 {"id": "\x00" * 15, "title": "x"}, {"title": "x", "created_at": "2020-01-01"}):
        for method in ("POST", "PUT"):
            resp = batch(c, op(method, "/api/collections/posts", body))
            assert resp.status_code < 500, (method, body, resp.get_json())
    for record_id in ("A" * 64, "abc", "ABCDEFGHIJKLMNO"):
        assert_error(batch(c, op("PATCH", f"/api/collections/posts/{record_id}", {"title": "x"})), 404)
    assert_error(c.get("/api/batch"), 405)
