"""Prepared list queries (alyx/list_plans.py): a plan gives what query.select_page gives, is kept per
request shape and caller, never for what differs per request, and the cache stays bounded."""
from __future__ import annotations

import pytest

from alyx import query as q
from alyx.list_plans import PagePlans, plan_key
from alyx.rules import Principal
from tests.conftest import BLOG_SCHEMA
from tests.helpers import assert_error

RULES_SCHEMA = """
collections:
  - name: users
    auth: true
  - name: mine
    fields:
      - {name: title, type: string}
      - {name: owner, type: string}
      - {name: n, type: int}
    rules: {list: "doc.owner == auth.id", view: "doc.owner == auth.id", create: "true"}
  - name: by_role
    fields:
      - {name: title, type: string}
    rules: {list: "auth.role == 'admin' || auth.verified", create: "true"}
  - name: since
    fields:
      - {name: title, type: string}
    rules: {list: "doc.title > request.query.after", create: "true"}
  - name: editors
    fields:
      - {name: title, type: string}
      - {name: editors, type: json}
    rules: {list: "auth != null && auth.id in doc.editors", create: "true"}
"""
ANN = Principal("ann000000000001", "ann@example.com")
BOB = Principal("bob000000000001", "bob@example.com")
QUERIES = [{}, {"filter": 'status == "published"', "perPage": "3", "page": "2"}, {"sort": "-views,title"},
           {"fields": "id,title", "filter": "views > 2 && views < 9"}, {"expand": "author", "skipTotal": "1"},
           {"status": "draft", "perPage": "4"}, {"filter": '{"views": {"$gte": 5}}', "page": "3", "perPage": "2"},
           {"filter": 'title.contains("1")', "sort": "created_at"}]


def test_a_plan_gives_what_select_page_gives(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    svc = app.extensions["alyx"]
    c = app.test_client()
    author = c.post("/api/auth/register", json={"email": "a@example.com", "password": "correct horse battery"})
    for i in range(12):
        assert c.post("/api/collections/posts", json={
            "title": f"t{i}", "views": i, "status": ("draft", "published")[i % 2], "tags": {"i": [i]},
            "author": author.get_json()["user"]["id"] if i % 3 else None, "published_at": "2026-01-02T03:04:05Z",
        }).status_code == 201
    records = svc.records
    coll = records.collection("posts")
    with svc.db.connection():
        for args in QUERIES:
            lq = q.parse_list_query(coll.spec, args, 30, 500)
            expected = q.select_page(coll.model, coll.columns(lq.fields, lq.expand), lq,
                                     q.compile_where(lq, coll.spec, coll.model, not svc.db.is_sqlite), [],
                                     svc.db.is_sqlite)
            for _ in range(2):  # built, then from the cache
                assert records.page(coll, lq, None) == expected, args
        assert len(records.plans) == len(QUERIES)


def test_a_plan_is_kept_per_caller(make_app) -> None:
    app = make_app(RULES_SCHEMA)
    svc = app.extensions["alyx"]
    records = svc.records
    with svc.db.connection():
        for who in (ANN, BOB, ANN):
            records.create("mine", {"title": f"of {who.email}", "owner": who.id, "n": 1}, check_rule=False)
        listing = {"filter": "n > 0", "perPage": "10"}
        for _ in range(2):
            assert [r["title"] for r in records.list("mine", listing, ANN)["items"]] == ["of ann@example.com"] * 2
            assert [r["title"] for r in records.list("mine", listing, BOB)["items"]] == ["of bob@example.com"]
            assert records.list("mine", listing, None)["items"] == []
        records.create("by_role", {"title": "x"}, check_rule=False)
        unverified, verified = Principal(ANN.id, ANN.email), Principal(ANN.id, ANN.email, verified=True)
        for _ in range(2):  # the same id, another role or verification: another plan
            assert records.list("by_role", {"filter": 'title == "x"'}, unverified)["totalItems"] == 0
            assert records.list("by_role", {"filter": 'title == "x"'}, verified)["totalItems"] == 1
            assert records.list("by_role", {"filter": 'title == "x"'}, Principal("z" * 15, "z@z.z", "admin")
                                )["totalItems"] == 1


def test_no_plan_for_what_differs_per_request_or_row(make_app) -> None:
    app = make_app(RULES_SCHEMA)
    svc = app.extensions["alyx"]
    access, spec = svc.access, svc.schema.collections["since"]
    lq = q.parse_list_query(spec, {"filter": 'title != ""'}, 30, 500)
    assert plan_key(access, "since", lq, ("list",), ANN) is None  # reads request.query
    assert plan_key(access, "editors", lq, ("list",), ANN) is None  # tested per row in Python
    assert plan_key(access, "since", lq, ("list",), Principal("z" * 15, "z@z.z", "admin")) is not None
    assert plan_key(access, "mine", q.every_match(lq.where[0]), ("view", "update"), ANN) is None  # no filter text
    with svc.db.connection():
        for title in ("a", "b", "c"):
            svc.records.create("since", {"title": title}, check_rule=False)
            svc.records.create("editors", {"title": title, "editors": [ANN.id] if title != "b" else []},
                               check_rule=False)
    c = app.test_client()
    for after, expected in (("a", ["b", "c"]), ("b", ["c"])):
        page = c.get(f"/api/collections/since?after={after}&filter=title != \"\"").get_json()
        assert [r["title"] for r in page["items"]] == expected
    assert len(svc.records.plans) == 0


def test_a_hostile_filter_is_a_400_every_time(make_app) -> None:
    c = make_app(BLOG_SCHEMA).test_client()
    for _ in range(2):
        assert_error(c.get('/api/collections/posts?filter=title == "x" || 1; DROP TABLE posts'), 400)
        assert_error(c.get("/api/collections/posts?filter=nope == 1"), 400)
        assert_error(c.get('/api/collections/posts?filter=views == "many"'), 400)
        assert_error(c.get("/api/collections/posts?views=many"), 400)
        assert c.get("/api/collections/posts?filter=views > 1").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_plans_stay_bounded(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    records = app.extensions["alyx"].records
    records.plans = PagePlans(max_entries=4)
    c = app.test_client()
    for i in range(6):
        assert c.post("/api/collections/posts", json={"title": f"t{i}", "views": i}).status_code == 201
    for i in range(20):
        page = c.get(f"/api/collections/posts?filter=views >= {i % 6}").get_json()
        assert page["totalItems"] == 6 - i % 6
        assert len(records.plans) <= 4
