"""The function context of the README (getContext, ctx, alyx.collections/functions/events) and the bulk
writes and object filters under it: REST through the Flask test client, functions through real runtimes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from alyx.app import create_app
from alyx.clock import iso, utcnow
from alyx.config import load_config
from alyx.errors import AlyxError
from alyx.records import ChangeEvent
from alyx.rules import Principal
from alyx.sandbox import tier_problems
from tests.conftest import TEST_ENV, install_test_users, write_project
from tests.harness import eventually
from tests.helpers import assert_error, pg_database

ADMIN = Principal("admin0000000001", "admin@example.com", "admin", True)
USER = Principal("user00000000001", "user@example.com", "user", True)
OTHER = Principal("user00000000002", "other@example.com", "user", True)
PEOPLE = {"admin": ADMIN, "user": USER, "other": OTHER}

SCHEMA = """
collections:
  - name: users
    auth: true
  - name: notes
    fields:
      - {name: text, type: string, required: true}
      - {name: owner, type: string}
      - {name: views, type: int, default: 0}
      - {name: score, type: float}
      - {name: done, type: bool, default: false}
      - {name: due, type: datetime}
      - {name: tag, type: select, values: [a, b, c]}
    rules:
      list: "true"
      view: "true"
      create: "auth != null"
      update: "auth != null && doc.owner == auth.id"
      delete: "auth != null && (doc.owner == auth.id || auth.role == 'admin')"
  - name: logs
    fields:
      - {name: message, type: string}
    rules: {list: "auth != null", view: "auth != null", create: "auth != null", update: "false",
            delete: "auth != null && auth.role == 'admin'"}
  - name: shelves
    fields:
      - {name: name, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
  - name: books
    fields:
      - {name: title, type: string}
      - {name: shelf, type: relation, collection: shelves, on_delete: restrict}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""
NOTES = "/api/collections/notes"
BULK = f"{NOTES}/bulk"


# -- REST: bulk writes and object filters ---------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rest_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    env = dict(TEST_ENV)
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            env["ALYX_DATABASE_URL"] = stack.enter_context(pg_database())
        app = create_app(load_config(write_project(tmp_path_factory.mktemp("ctx"), SCHEMA), env=env))
        app.testing = True
        install_test_users(app, PEOPLE.__getitem__)
        stack.callback(app.extensions["alyx"].close)
        yield app


@pytest.fixture
def api(rest_app: Flask) -> Iterator[Any]:
    svc = rest_app.extensions["alyx"]
    with svc.db.connection():
        for name in ("books", "shelves", "notes", "logs"):
            svc.models[name].delete().execute()
    yield rest_app.test_client()


def as_(who: str) -> dict[str, str]:
    return {"X-Test-User": who}


def seed(api: Any) -> dict[str, str]:
    """Six notes: three by USER, two by OTHER, one by nobody; returns text → id."""
    rows = [("u1", USER, 1, 0.5, False, "2026-01-01T00:00:00Z", "a"), ("u2", USER, 5, 1.5, True, None, "b"),
            ("u3", USER, 10, None, False, "2026-06-01T12:00:00.000Z", "c"),
            ("o1", OTHER, 3, 2.5, True, "2025-12-31T23:59:59Z", "a"), ("o2", OTHER, 7, None, False, None, None),
            ("n1", None, 0, 0.0, False, None, "b")]
    ids = {}
    for text, who, views, score, done, due, tag in rows:
        body = {"text": text, "owner": who.id if who else None, "views": views, "score": score, "done": done,
                "due": due, "tag": tag}
        made = api.post(NOTES, json=body, headers=as_("admin"))
        assert made.status_code == 201, made.json
        ids[text] = made.json["id"]
    return ids


def texts(api: Any, where: Any) -> list[str]:
    filter_text = where if isinstance(where, str) else json.dumps(where)
    page = api.get(NOTES, query_string={"filter": filter_text, "sort": "text"})
    assert page.status_code == 200, page.json
    return [item["text"] for item in page.json["items"]]


@pytest.mark.parametrize(("where", "expected"), [
    ({"tag": "a"}, ["o1", "u1"]),
    ({"owner": None}, ["n1"]),
    ({"views": {"$eq": 5}}, ["u2"]),
    ({"views": {"$ne": 5}}, ["n1", "o1", "o2", "u1", "u3"]),
    ({"views": {"$lt": 3}}, ["n1", "u1"]),
    ({"views": {"$lte": 3}}, ["n1", "o1", "u1"]),
    ({"views": {"$gt": 7}}, ["u3"]),
    ({"views": {"$gte": 7}}, ["o2", "u3"]),
    ({"views": {"$gte": 3, "$lt": 10}}, ["o1", "o2", "u2"]),
    ({"tag": {"$in": ["a", "c"]}}, ["o1", "u1", "u3"]),
    ({"tag": {"$nin": ["a", "c"]}}, ["n1", "o2", "u2"]),  # a null tag is not in the list
    ({"score": {"$gt": 1}}, ["o1", "u2"]),
    ({"done": True, "views": {"$gt": 3}}, ["u2"]),
    ({"due": {"$lt": "2026-02-01T00:00:00.000Z"}}, ["o1", "u1"]),
    ({"due": {"$gte": "2026-01-01T00:00:00Z"}}, ["u1", "u3"]),
    ({"$or": [{"tag": "c"}, {"views": {"$lt": 1}}]}, ["n1", "u3"]),
    ({"$and": [{"done": False}, {"$or": [{"tag": "a"}, {"tag": None}]}]}, ["o2", "u1"]),
    ({"$or": [{"text": "u1"}], "views": 1}, ["u1"]),
])
def test_object_filters_select_like_cel(api: Any, where: Any, expected: list[str]) -> None:
    seed(api)
    assert texts(api, where) == expected


def test_object_filter_matches_the_cel_text_it_stands_for(api: Any) -> None:
    seed(api)
    assert texts(api, {"$or": [{"views": {"$gte": 7}}, {"tag": {"$in": ["a"]}}], "done": False}) \
        == texts(api, '(views >= 7 || tag in ["a"]) && done == false') == ["o2", "u1", "u3"]


def deep(leaf: dict[str, Any], levels: int) -> dict[str, Any]:
    for _ in range(levels):
        leaf = {"$or": [leaf]}
    return leaf


@pytest.mark.parametrize("where", [
    {"nope": 1},                                   # unknown field
    {"owner": {"$regex": "x"}},                    # unknown operator
    {"$not": {"tag": "a"}},                        # unknown top-level operator
    {"views": {"$lt": [1, 2]}},                    # a list where a value belongs
    {"views": {"$in": 3}},                         # $in without a list
    {"views": {"$in": [{"x": 1}]}},                # nested junk in a list
    {"views": {"x": {"y": {"z": 1}}}},             # nested junk as operators
    {"views": {}},                                 # no operator
    {"views": [1, 2]},                             # a list as a value
    {"$or": []},                                   # empty combinator
    {"$and": {"tag": "a"}},                        # combinator without a list
    {"$or": ["tag"]},                              # combinator over non-objects
    {"views": "many"},                             # wrong type for the field
    {"due": {"$lt": "yesterday"}},                 # not a datetime
    {"views": {"$lt": None}},                      # ordering against null
    {"text.length": 3},                            # a path, not a field
    {"password_hash": "x"},                        # a hidden field of no collection here
    deep({"tag": "a"}, 25),                        # too deep
    {"tag": {"$in": list(range(501))}},            # too long a list
])
def test_hostile_object_filters_are_400s_in_the_error_shape(api: Any, where: Any) -> None:
    error = assert_error(api.get(NOTES, query_string={"filter": json.dumps(where)}), 400, "bad_request")
    assert "filter" in error["details"], error
    error = assert_error(api.delete(BULK, json={"filter": where}, headers=as_("admin")), 400, "bad_request")
    assert "filter" in error["details"], error


def test_broken_json_filters_and_bulk_bodies_are_400s(api: Any) -> None:
    assert_error(api.get(NOTES, query_string={"filter": '{"views": '}), 400, "bad_request")
    assert_error(api.get(NOTES, query_string={"filter": "[" * 5000}), 400, "bad_request")
    for body in ({}, {"filter": {}}, {"filter": ""}, {"filter": None}, {"filter": 3}, {"filter": ["views"]},
                 {"filter": "true", "extra": 1}):
        assert_error(api.delete(BULK, json=body, headers=as_("admin")), 400)
    assert_error(api.patch(BULK, json={"filter": "true"}, headers=as_("user")), 400)
    assert_error(api.patch(BULK, json={"filter": "true", "changes": [1]}, headers=as_("user")), 400)
    assert_error(api.patch(BULK, json={"filter": "true", "changes": {}}, headers=as_("user")), 422)
    assert_error(api.patch(BULK, json={"filter": "true", "changes": {"id": "x"}}, headers=as_("user")), 422)
    assert_error(api.patch(BULK, json={"filter": "true", "changes": {"views": "x"}}, headers=as_("user")), 422)
    assert_error(api.delete(BULK, data="filter=true", headers=as_("admin")), 415)
    assert_error(api.delete("/api/collections/nothing/bulk", json={"filter": "true"}, headers=as_("admin")), 404)
    assert_error(api.get(BULK), 404, "not_found")  # "bulk" is no record id
    assert_error(api.post(BULK, json={}), 405)
    assert_error(api.delete(NOTES, json={"filter": "true"}, headers=as_("admin")), 405)  # only under /bulk


def test_bulk_writes_honour_the_rules_per_record(api: Any) -> None:
    ids = seed(api)
    # Anonymous: the delete rule refuses every record, so none is deleted (not a 403).
    assert api.delete(BULK, json={"filter": "true"}).json == {"count": 0}
    # USER may update only their own notes: the rule filters which records the filter reaches.
    done = api.patch(BULK, json={"filter": {"views": {"$gte": 3}}, "changes": {"tag": "c"}}, headers=as_("user"))
    assert done.status_code == 200 and done.json == {"count": 2}, done.json
    assert texts(api, {"tag": "c"}) == ["u2", "u3"]
    assert api.get(f"{NOTES}/{ids['o1']}").json["tag"] == "a"
    # OTHER deletes with a CEL string: only their own.
    assert api.delete(BULK, json={"filter": "views > 0"}, headers=as_("other")).json == {"count": 2}
    assert texts(api, "true") == ["n1", "u1", "u2", "u3"]
    # An admin may delete any note.
    assert api.delete(BULK, json={"filter": {"owner": USER.id, "views": {"$lt": 10}}},
                      headers=as_("admin")).json == {"count": 2}
    assert texts(api, "true") == ["n1", "u3"]


def test_bulk_writes_publish_one_change_per_record_after_commit(api: Any, rest_app: Flask) -> None:
    seed(api)
    seen: list[ChangeEvent] = []
    records = rest_app.extensions["alyx"].records
    records.subscribe(seen.append)
    try:
        assert api.patch(BULK, json={"filter": {"owner": USER.id}, "changes": {"done": True}},
                         headers=as_("user")).json == {"count": 3}
        assert api.delete(BULK, json={"filter": {"done": True}}, headers=as_("admin")).json == {"count": 4}
    finally:
        records.listeners.remove(seen.append)
    updates = [e for e in seen if e.action == "update"]
    assert sorted(e.record["text"] for e in updates) == ["u1", "u2", "u3"]
    assert all(e.record["done"] and e.previous is not None for e in updates)
    assert sorted(e.record["text"] for e in seen if e.action == "delete") == ["o1", "u1", "u2", "u3"]
    assert all(e.record["updated_at"] > e.previous["updated_at"] for e in updates if e.previous)


def test_guards_see_each_record_and_may_refuse_the_whole_bulk_write(api: Any, rest_app: Flask) -> None:
    ids = seed(api)
    records = rest_app.extensions["alyx"].records
    seen: list[tuple[str, str, str | None]] = []
    writers: set[str | None] = set()

    def guard(collection: str, action: str, document: dict[str, Any], previous: dict[str, Any] | None,
              writer: Principal | None) -> Any:
        seen.append((action, document["text"], previous and previous["text"]))
        writers.add(writer and writer.id)
        if action == "delete" and document["text"] == "u2":
            raise AlyxError("forbidden", "u2 stays", 403)
        return {"views": document["views"] + 100} if action == "update" else None

    records.guard(guard, lambda collection, action: collection == "notes")
    try:
        done = api.patch(BULK, json={"filter": {"owner": USER.id}, "changes": {"tag": "a"}}, headers=as_("user"))
        assert done.json == {"count": 3}
        assert sorted(seen) == [("update", "u1", "u1"), ("update", "u2", "u2"), ("update", "u3", "u3")]
        assert writers == {USER.id}  # each guard call names who writes
        assert {n: api.get(f"{NOTES}/{ids[n]}").json["views"] for n in ("u1", "u2", "u3", "o1")} \
            == {"u1": 101, "u2": 105, "u3": 110, "o1": 3}  # each record got its own guard's change
        assert_error(api.delete(BULK, json={"filter": {"owner": USER.id}}, headers=as_("admin")), 403, "forbidden")
        assert texts(api, {"owner": USER.id}) == ["u1", "u2", "u3"]  # refused as a whole
    finally:
        records.guards[:] = [entry for entry in records.guards if entry[0] is not guard]


def test_a_bulk_delete_is_one_transaction(api: Any) -> None:
    shelves = [api.post("/api/collections/shelves", json={"name": n}).json["id"] for n in ("a", "b", "c")]
    api.post("/api/collections/books", json={"title": "held", "shelf": shelves[1]})
    assert_error(api.delete("/api/collections/shelves/bulk", json={"filter": "true"}), 409, "conflict")
    assert api.get("/api/collections/shelves").json["totalItems"] == 3  # all or nothing
    assert api.delete("/api/collections/shelves/bulk", json={"filter": {"name": {"$ne": "b"}}}).json == {"count": 2}


def test_bulk_writes_are_in_the_openapi_document(api: Any) -> None:
    paths = api.get("/api/openapi.json").json["paths"]
    assert set(paths["/api/collections/notes/bulk"]) == {"patch", "delete"}
    assert paths["/api/collections/notes/bulk"]["delete"]["operationId"] == "delete_many_notes"


# -- functions: the context API through real runtimes ---------------------------------------------
@pytest.fixture(params=["process", "bwrap"])
def tier(request: pytest.FixtureRequest) -> str:
    problem = tier_problems(request.param)
    if problem:
        pytest.fail(f"sandbox tier {request.param} cannot run here: {problem} (run scripts/provision.sh)")
    return request.param


FnApp = Callable[..., Flask]


@pytest.fixture
def fn_app(tmp_path: Path, tier: str) -> Iterator[FnApp]:
    """An app (SQLite, the given tier) whose functions/ holds the given files; X-Test-User names one of PEOPLE."""
    apps: list[Flask] = []

    def factory(files: dict[str, str], schema: str = SCHEMA) -> Flask:
        project = write_project(tmp_path / f"project{len(apps)}", schema)
        for name, text in files.items():
            path = project / "functions" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        app = create_app(load_config(project, env={**TEST_ENV, "ALYX_FUNCTIONS_SANDBOX": tier,
                                                   "ALYX_FUNCTIONS_IDLE_TTL": "600"}))
        app.testing = True
        install_test_users(app, PEOPLE.__getitem__)
        app.config["project"] = project
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["alyx"].close()


def executions(app: Flask, **filters: str) -> list[dict[str, Any]]:
    response = app.test_client().get("/api/executions", query_string=filters, headers=as_("admin"))
    assert response.status_code == 200, response.data
    items: list[dict[str, Any]] = response.json["items"]
    return items


CRUD_PY = """
from sdk import get_context, getContext

def handler(req, res):
    context = get_context()
    assert getContext() is context and ctx.alyx is context.alyx is req.alyx
    notes = context.alyx.collections.notes
    made = notes.create({"text": "py", "owner": context.auth["id"], "views": 2})
    notes.update(made["id"], {"views": 2})
    assert notes.update_many('text == "py" && views == 2', {"views": 3}) == {"count": 1}
    assert notes.updateMany({"text": "py"}, {"done": True})["count"] == 1
    seen = notes.get(made["id"])["views"]
    listed = notes.list({"filter": {"views": {"$gte": 3}}, "sort": "-views"})["totalItems"]
    page = notes.list({"fields": ["id", "views"], "skipTotal": True}, perPage=5)
    assert set(page["items"][0]) == {"id", "views"} and page["totalItems"] == -1, page
    notes.delete(made["id"])
    try:
        notes.get(made["id"])
    except Exception as exc:
        gone = exc.status
    return res.json({"seen": seen, "listed": listed, "gone": gone, "auth": context.auth["email"],
                     "env": context.env.get("GREETING")})
"""
CRUD_JS = """
import { getContext } from './sdk';

export default async function handler(req, res) {
  const context = getContext();
  if (ctx !== context || context.alyx !== req.alyx) throw new Error('ctx is not the context');
  const notes = context.alyx.collections.notes;
  const made = await notes.create({ text: 'js', owner: context.auth.id, views: 2 });
  await notes.update(made.id, { views: 2 });
  const bulk = await notes.updateMany('text == "js" && views == 2', { views: 3 });
  if (bulk.count !== 1 || (await notes.updateMany({ text: 'js' }, { done: true })).count !== 1) throw new Error('bulk');
  const seen = (await notes.get(made.id)).views;
  const listed = (await notes.list({ filter: { views: { $gte: 3 } }, sort: '-views' })).totalItems;
  const page = await notes.list({ fields: ['id', 'views'], skipTotal: true, perPage: 5 });
  if (Object.keys(page.items[0]).join() !== 'id,views' || page.totalItems !== -1) throw new Error(JSON.stringify(page));
  await notes.delete(made.id);
  const gone = await notes.get(made.id).catch((err) => err.status);
  return res.json({ seen, listed, gone, auth: context.auth.email, env: context.env.GREETING });
}
"""
CRUD_CJS = """
const { getContext } = require('./sdk');
module.exports = async (req, res) => res.json({ auth: getContext().auth.email });
"""
MANIFEST = "env:\n  GREETING: hi\n"


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_get_context_crud_as_the_caller(fn_app: FnApp, runtime: str) -> None:
    entry, source = ("index.py", CRUD_PY) if runtime == "python" else ("index.js", CRUD_JS)
    app = fn_app({f"crud/{entry}": source, "crud/manifest.yaml": MANIFEST, "cjs.js": CRUD_CJS},
                 schema=SCHEMA)
    c = app.test_client()
    done = c.post("/api/functions/crud", headers=as_("user"))
    assert done.status_code == 200, done.json
    assert done.json == {"seen": 3, "listed": 1, "gone": 404, "auth": USER.email, "env": "hi"}
    assert c.get("/api/functions/crud").status_code == 500  # anonymous: context.auth is None, create refused
    if runtime == "node":
        assert c.get("/api/functions/cjs", headers=as_("other")).json == {"auth": OTHER.email}


SLOW_PY = """
import time
from sdk import get_context

def handler(req, res):
    before = get_context().auth
    time.sleep(0.4)
    return res.json({"before": before and before["id"], "after": ctx.auth and ctx.auth["id"],
                     "input": ctx.input})
"""
SLOW_JS = """
export default async function handler(req, res) {
  const before = ctx.auth;
  await new Promise((resolve) => setTimeout(resolve, 400));
  const { getContext } = await import('./sdk');
  const after = getContext().auth;
  return res.json({ before: before && before.id, after: after && after.id, input: ctx.input });
}
"""
SLOW_MANIFEST = "max_instances: 1\nconcurrency: 4\ntimeout: 20\n"


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_concurrent_invocations_keep_their_own_context(fn_app: FnApp, runtime: str) -> None:
    entry, source = ("index.py", SLOW_PY) if runtime == "python" else ("index.js", SLOW_JS)
    app = fn_app({f"slow/{entry}": source, "slow/manifest.yaml": SLOW_MANIFEST}, schema=SCHEMA)
    c = app.test_client()
    assert c.post("/api/functions/slow", json={"warm": 1}).status_code == 200
    answers: dict[str, Any] = {}

    def call(who: str) -> None:
        headers = as_(who) if who != "anonymous" else {}
        answers[who] = app.test_client().post("/api/functions/slow", json={"who": who}, headers=headers).json

    threads = [threading.Thread(target=call, args=(who,)) for who in ("user", "other", "admin", "anonymous")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for who, principal in (*PEOPLE.items(), ("anonymous", None)):
        expected = principal.id if principal else None
        assert answers[who] == {"before": expected, "after": expected, "input": {"who": who}}, answers
    runs = [r for r in executions(app, function_id="slow")]
    assert len({r["sandbox"] for r in runs}) == 1  # all in one sandbox, overlapping
    handler_ms = sorted(r["duration_ms"] for r in runs[:4])
    assert sum(handler_ms) > 1400 and max(handler_ms) < 1400, handler_ms  # they did overlap


CLEANUP_JS = """
// functions/daily-cleanup/index.js (the README's example, verbatim)
export default async function handler(req, res) {
  const { retention_days } = req.input;
  const cutoff = new Date();
  cutoff.setDate(cutoff.getDate() - retention_days);

  // Clean up old logs
  const deleted = await ctx.alyx.collections.logs.deleteMany({
    created_at: { $lt: cutoff }
  });

  return res.json({ deleted: deleted.count });
}
"""
CLEANUP_PY = """
import datetime

def handler(req, res):
    cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=req.input["retention_days"])
    deleted = ctx.alyx.collections.logs.delete_many({"created_at": {"$lt": cutoff}})
    return res.json({"deleted": deleted["count"]})
"""


CLEANUP_MANIFEST = """
# functions/daily-cleanup/manifest.yaml (the README's example, verbatim)
name: daily-cleanup
runtime: node
schedules:
  - name: cleanup-old-logs
    type: cron
    expression: "0 2 * * *"  # Daily at 2 AM
    timezone: America/New_York
    config:
      input:
        retention_days: 30
"""


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_daily_cleanup_deletes_old_rows_with_delete_many(fn_app: FnApp, runtime: str) -> None:
    entry, source = ("index.js", CLEANUP_JS) if runtime == "node" else ("index.py", CLEANUP_PY)
    # `http: true` serves it over /api/functions too (functions with triggers are not, by default); a schedule
    # has no caller (it runs anonymous), so deleting admin-only logs needs the manifest's `run_as: system`.
    manifest = CLEANUP_MANIFEST.replace("runtime: node", f"runtime: {runtime}\nhttp: true\nrun_as: system")
    app = fn_app({f"daily-cleanup/{entry}": source, "daily-cleanup/manifest.yaml": manifest},
                  schema=SCHEMA)
    svc = app.extensions["alyx"]
    records, logs, now = svc.records, svc.models["logs"], utcnow()
    ages = {"fresh": 1, "recent": 29, "old": 31, "older": 90, "ancient": 400}
    with svc.db.connection():
        for message, days in ages.items():
            made = records.create("logs", {"message": message}, ADMIN)
            logs.update(created_at=now - dt.timedelta(days=days)).where(logs.id == made["id"]).execute()
    c = app.test_client()
    # Rules apply as the caller: only admins may delete logs, so a user's call deletes nothing.
    assert c.post("/api/functions/daily-cleanup", json={"retention_days": 30}, headers=as_("user")).json \
        == {"deleted": 0}
    # The schedule runs as the server (run_as: system), with the schedule's config.input.
    ran = c.post("/api/schedules/daily-cleanup/cleanup-old-logs/run", headers=as_("admin"))
    assert ran.status_code == 202, ran.json

    def scheduled_runs() -> list[dict[str, Any]]:
        svc.events.run_due_jobs()  # unless the worker's own loop took the job first
        return executions(app, function_id="daily-cleanup", trigger_type="schedule")

    (run,) = eventually(scheduled_runs, what="the schedule's run")
    assert run["status"] == "success" and json.loads(run["output"]["body"]) == {"deleted": 3}, run
    with svc.db.connection():
        left = records.list("logs", {"sort": "message"}, ADMIN)["items"]
    assert [item["message"] for item in left] == ["fresh", "recent"]
    assert all(item["created_at"] > iso(now - dt.timedelta(days=30)) for item in left)


INVOKER_JS = """
import { getContext } from './sdk';
export default async function handler(req, res) {
  const { alyx, auth } = getContext();
  const result = await alyx.functions.invoke('send-email', { to: auth.email, subject: 'Hello!' });
  const published = await alyx.events.publish({
    type: 'custom', source: 'my-app', action: 'user-action', payload: { user_id: auth.id },
  });
  const refused = await alyx.functions.invoke('admins-only', {}).catch((err) => err.status);
  return res.json({ result, published, refused });
}
"""
INVOKER_PY = """
from sdk import get_context

def handler(req, res):
    context = get_context()
    result = context.alyx.functions.invoke("send-email", {"to": context.auth["email"], "subject": "Hello!"})
    published = context.alyx.events.publish({"type": "custom", "source": "my-app", "action": "user-action",
                                             "payload": {"user_id": context.auth["id"]}})
    try:
        refused = context.alyx.functions.invoke("admins-only", {})
    except Exception as exc:
        refused = exc.status
    return res.json({"result": result, "published": published, "refused": refused})
"""
SEND_EMAIL_PY = """
def handler(req, res):
    return res.json({"sent_to": req.input["to"], "subject": req.json["subject"], "as": req.auth["id"],
                     "trigger": req.trigger})
"""


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_functions_invoke_and_events_publish(fn_app: FnApp, runtime: str) -> None:
    entry, source = ("index.js", INVOKER_JS) if runtime == "node" else ("index.py", INVOKER_PY)
    app = fn_app({f"invoker/{entry}": source, "invoker/manifest.yaml": "timeout: 20\n",
                  "send-email.py": SEND_EMAIL_PY,
                  "admins-only/index.py": "def handler(req, res):\n    return {}\n",
                  "admins-only/manifest.yaml": "rules:\n  invoke: \"auth != null && auth.role == 'admin'\"\n",
                  "listener/index.py": "def handler(req, res):\n    print(req.input)\n",
                  "listener/manifest.yaml": "hooks:\n  - {type: event, event: custom, source: my-app}\n"},
                 schema=SCHEMA)
    done = app.test_client().post("/api/functions/invoker", headers=as_("user"))
    assert done.status_code == 200, done.json
    assert done.json == {"result": {"sent_to": USER.email, "subject": "Hello!", "as": USER.id, "trigger": "http"},
                         "published": {"delivered_to": ["listener"]}, "refused": 403}
    assert [r["status"] for r in executions(app, function_id="send-email")] == ["success"]


def test_a_function_with_its_own_sdk_module_keeps_it(fn_app: FnApp) -> None:
    app = fn_app({"own/index.js": "import { getContext } from './sdk.js';\n"
                                  "export default async (req, res) => res.json({ mine: getContext() });\n",
                  "own/sdk.js": "export const getContext = () => 'my own';\n", "own/manifest.yaml": "runtime: node\n",
                  "ownpy/manifest.yaml": "runtime: python\n",
                  "ownpy/index.py": "import sdk\ndef handler(req, res):\n    return {'mine': sdk.get_context()}\n",
                  "ownpy/sdk.py": "def get_context():\n    return 'my own'\n"})
    c = app.test_client()
    assert c.get("/api/functions/own").json == {"mine": "my own"}
    assert c.get("/api/functions/ownpy").json == {"mine": "my own"}
    folder = app.config["project"] / "functions" / "own"
    assert sorted(p.name for p in folder.iterdir()) == ["index.js", "manifest.yaml", "sdk.js"]  # nothing written
