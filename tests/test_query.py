"""The one list query (alyx/query.py, `Records.page`): a REST list and a realtime snapshot of the same
query give the same first page and total, on SQLite and PostgreSQL.

Ids are handed out in the reverse of creation order, so a snapshot that ordered by id (as it once
did without `sort`) would disagree with REST's creation order.
"""
from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest

from alyx.app import create_app
from alyx.config import load_config
from alyx.realtime import Client
from tests.conftest import TEST_ENV, write_project
from tests.helpers import pg_database

SCHEMA = """
collections:
  - name: users
    auth: true
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: views, type: int, default: 0}
      - {name: public, type: bool, default: true}
    rules: {list: "doc.public == true", view: "true", create: "true", update: "true", delete: "true"}
  - name: shared
    fields:
      - {name: title, type: string}
      - {name: editors, type: json}
    rules:
      list: "auth != null && auth.id in doc.editors"
      view: "auth != null && auth.id in doc.editors"
      create: "true"
"""
PASSWORD = "correct horse battery staple"
CASES = [
    ("posts", {}, "nobody"),  # no sort: creation order
    ("posts", {"sort": "-views"}, "nobody"),
    ("posts", {"sort": "title", "limit": 3}, "nobody"),
    ("posts", {"filter": "views >= 2", "limit": 2}, "nobody"),
    ("posts", {"filter": 'title.startsWith("post")', "sort": "-title"}, "nobody"),
    ("shared", {}, "editor"),  # a rule SQL cannot express: tested row by row
    ("shared", {"sort": "-title", "limit": 2}, "editor"),
    ("shared", {"filter": 'title != "s1"'}, "editor"),
]


def reverse_ids(count: int) -> list[str]:
    """Valid record ids that sort in the opposite order to the one they are created in."""
    return [chr(ord("z") - n) * 15 for n in range(count)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = dict(TEST_ENV)
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            env["ALYX_DATABASE_URL"] = stack.enter_context(pg_database())
        app = create_app(load_config(write_project(tmp_path_factory.mktemp("query"), SCHEMA), env=env))
        app.testing = True
        stack.callback(app.extensions["alyx"].close)
        http = app.test_client()
        signed_in = http.post("/api/auth/register", json={"email": "ed@example.com", "password": PASSWORD})
        assert signed_in.status_code == 201, signed_in.get_json()
        token, user_id = signed_in.get_json()["access_token"], signed_in.get_json()["user"]["id"]
        for n, rid in enumerate(reverse_ids(8)):
            post = {"id": rid, "title": f"post {n % 3} {n}", "views": n % 4, "public": n % 3 != 1}
            assert http.post("/api/collections/posts", json=post).status_code == 201
        for n, rid in enumerate(reverse_ids(6)):
            doc = {"id": rid, "title": f"s{n}", "editors": [user_id] if n % 2 == 0 else ["someone-else"]}
            assert http.post("/api/collections/shared", json=doc).status_code == 201
        yield app, {"nobody": None, "editor": token}


def rest_page(app: Any, collection: str, query: dict[str, Any], token: str | None) -> dict[str, Any]:
    args = {("perPage" if key == "limit" else key): str(value) for key, value in query.items()}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = app.test_client().get(f"/api/collections/{collection}", query_string=args, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def snapshot(app: Any, collection: str, query: dict[str, Any], token: str | None) -> dict[str, Any]:
    svc = app.extensions["alyx"]
    rt = svc.realtime
    client = Client(rt, "query-test", wake=lambda: None)
    try:
        if token is not None:
            rt.authenticate(client, svc.auth.principal_from_token(token), None)
        rt.subscribe(client, {"collection": collection, **query}, "q")
        (reply,) = [orjson.loads(f) for f in client.outbox]
        assert reply["type"] == "snapshot", reply
        return reply["payload"]
    finally:
        rt.disconnect(client)


@pytest.mark.parametrize(("collection", "query", "who"), CASES)
def test_rest_and_snapshot_give_the_same_first_page(world: Any, collection: str, query: dict[str, Any],
                                                    who: str) -> None:
    app, tokens = world
    rest = rest_page(app, collection, query, tokens[who])
    snap = snapshot(app, collection, query, tokens[who])
    assert rest["items"], "every case should have rows to order"
    assert snap["docs"] == rest["items"]
    assert snap["total"] == rest["totalItems"]


def test_without_sort_both_use_creation_order(world: Any) -> None:
    app, _ = world
    rest = rest_page(app, "posts", {}, None)
    created = [rid for n, rid in enumerate(reverse_ids(8)) if n % 3 != 1]  # the rule hides every third
    assert [d["id"] for d in rest["items"]] == created
    assert [d["id"] for d in snapshot(app, "posts", {}, None)["docs"]] == created
