"""The REST contract of DESIGN.md §4, on SQLite and PostgreSQL, through the Flask test client.

One app (and one PostgreSQL database) per backend for the whole module; every test starts from
empty tables, so the module stays fast while each test sees only its own records.
"""
from __future__ import annotations

import contextlib
import re

import pytest

from alyx.app import create_app
from alyx.config import load_config
from alyx.schema import creation_order
from tests.conftest import TEST_ENV, write_project
from tests.helpers import assert_error, pg_database

POSTS = "/api/collections/posts"
PUBLIC = '{list: "true", view: "true", create: "true", update: "true", delete: "true"}'
SCHEMA = f"""
collections:
  - name: users
    auth: true
  - name: posts
    fields:
      - {{name: title, type: string, required: true, max: 200}}
      - {{name: body, type: text}}
      - {{name: status, type: select, values: [draft, published], default: draft}}
      - {{name: author, type: relation, collection: users, on_delete: cascade}}
      - {{name: tags, type: json}}
      - {{name: views, type: int, default: 0, min: 0, index: true}}
      - {{name: score, type: float}}
      - {{name: featured, type: bool, default: false}}
      - {{name: published_at, type: datetime}}
      - {{name: day, type: date}}
      - {{name: contact, type: email}}
      - {{name: link, type: url}}
      - {{name: ref, type: uuid}}
      - {{name: slug, type: string, unique: true, pattern: "^[a-z0-9-]+$"}}
    indexes:
      - {{fields: [author, status]}}
    rules: {PUBLIC}
  - name: writers
    fields:
      - {{name: name, type: string, required: true}}
      - {{name: public, type: bool, default: true}}
    rules: {{list: "doc.public == true", view: "doc.public == true", create: "true", update: "true", delete: "true"}}
  - name: articles
    fields:
      - {{name: title, type: string, required: true}}
      - {{name: author, type: relation, collection: writers, on_delete: cascade}}
      - {{name: editor, type: relation, collection: writers, on_delete: set_null}}
      - {{name: parent, type: relation, collection: articles, on_delete: set_null}}
    rules: {PUBLIC}
  - name: categories
    fields:
      - {{name: name, type: string}}
    rules: {PUBLIC}
  - name: products
    fields:
      - {{name: name, type: string}}
      - {{name: category, type: relation, collection: categories, on_delete: restrict, required: true}}
    rules: {PUBLIC}
"""
MAX_BODY = 20_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request, tmp_path_factory):
    env = dict(TEST_ENV)
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            env["ALYX_DATABASE_URL"] = stack.enter_context(pg_database())
        folder = write_project(tmp_path_factory.mktemp("api"), SCHEMA, f"server:\n  max_body_bytes: {MAX_BODY}\n")
        app = create_app(load_config(folder, env=env))
        app.testing = True
        stack.callback(app.extensions["alyx"].close)
        yield app


@pytest.fixture
def client(api):
    """A client on empty tables."""
    svc = api.extensions["alyx"]
    with svc.db.connection():
        for spec in reversed(creation_order(svc.schema)):
            svc.models[spec.name].delete().execute()
    return api.test_client()


def create(client, data, collection="posts"):
    resp = client.post(f"/api/collections/{collection}", json=data)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def titles(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [item["title"] for item in resp.get_json()["items"]]


def listing(client, **params):
    return client.get(POSTS, query_string=params)


@pytest.fixture
def seeded(client):
    """Four posts with varied values (and one with every optional field empty)."""
    create(client, {"title": "Alpha", "views": 10, "status": "published", "score": 1.5, "featured": True,
                    "published_at": "2026-01-01T10:00:00Z", "day": "2026-01-01", "slug": "alpha",
                    "tags": ["a", "b"], "contact": "a@example.com"})
    create(client, {"title": "Beta", "views": 20, "status": "draft", "score": 2.5,
                    "published_at": "2026-02-01T10:00:00+02:00", "day": "2026-02-01", "slug": "beta"})
    create(client, {"title": "Gamma ray", "views": 30, "status": "published", "featured": False,
                    "published_at": "2026-03-01T10:00:00Z", "slug": "gamma"})
    create(client, {"title": "Delta"})
    return client


# -- CRUD --------------------------------------------------------------------------------------------
def test_crud_round_trip(client):
    created = create(client, {"title": "Hello", "body": "text", "tags": {"k": [1, 2]}, "score": 2,
                              "published_at": "2026-05-06T07:08:09.123+02:00", "day": "2026-05-06",
                              "contact": "me@example.com", "link": "https://example.com/x",
                              "ref": "123e4567-e89b-12d3-a456-426614174000", "slug": "hello"})
    assert re.fullmatch(r"[a-z0-9]{15}", created["id"])
    assert created["created_at"] == created["updated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created["created_at"])
    assert created["status"] == "draft" and created["views"] == 0 and created["featured"] is False  # defaults
    assert created["published_at"] == "2026-05-06T05:08:09.123Z"  # stored and shown in UTC
    assert created["day"] == "2026-05-06" and created["tags"] == {"k": [1, 2]} and created["score"] == 2.0
    record_id = created["id"]

    assert client.get(f"{POSTS}/{record_id}").get_json() == created
    updated = client.patch(f"{POSTS}/{record_id}", json={"title": "Hello 2", "views": 5})
    assert updated.status_code == 200, updated.get_json()
    body = updated.get_json()
    assert body["title"] == "Hello 2" and body["views"] == 5 and body["body"] == "text"  # partial update
    assert body["created_at"] == created["created_at"] and body["updated_at"] >= created["updated_at"]
    assert client.get(f"{POSTS}/{record_id}").get_json() == body

    deleted = client.delete(f"{POSTS}/{record_id}")
    assert deleted.status_code == 204 and deleted.data == b""
    assert_error(client.get(f"{POSTS}/{record_id}"), 404, "not_found")
    assert_error(client.delete(f"{POSTS}/{record_id}"), 404)
    assert_error(client.patch(f"{POSTS}/{record_id}", json={"title": "x"}), 404)


def test_ids_are_unique_and_client_ids_are_checked(client):
    ids = {create(client, {"title": str(i)})["id"] for i in range(20)}
    assert len(ids) == 20 and all(re.fullmatch(r"[a-z0-9]{15}", i) for i in ids)
    mine = create(client, {"title": "mine", "id": "abcdefghij12345"})
    assert mine["id"] == "abcdefghij12345"
    error = assert_error(client.post(POSTS, json={"title": "dup", "id": "abcdefghij12345"}), 409, "conflict")
    assert "id" in error["details"]
    assert "id" in assert_error(client.post(POSTS, json={"title": "x", "id": "Short"}), 422)["details"]
    assert "id" in assert_error(client.patch(f"{POSTS}/{mine['id']}", json={"id": "zzzzzzzzzzzzzzz"}), 422)["details"]


def test_list_envelope_and_pagination(client):
    for i in range(7):
        create(client, {"title": f"t{i}", "views": i})
    page = listing(client, perPage="3", page="2", sort="views").get_json()
    assert set(page) == {"items", "page", "perPage", "totalItems", "totalPages"}
    assert (page["page"], page["perPage"], page["totalItems"], page["totalPages"]) == (2, 3, 7, 3)
    assert [i["views"] for i in page["items"]] == [3, 4, 5]
    assert [i["views"] for i in listing(client, perPage="3", page="3", sort="views").get_json()["items"]] == [6]
    assert listing(client, perPage="3", page="9").get_json()["items"] == []
    default = listing(client).get_json()
    assert default["perPage"] == 30 and default["page"] == 1 and len(default["items"]) == 7
    skipped = listing(client, skipTotal="1", perPage="2").get_json()
    assert skipped["totalItems"] == -1 and skipped["totalPages"] == -1 and len(skipped["items"]) == 2
    assert listing(client, perPage="500").status_code == 200


@pytest.mark.parametrize("params", [{"perPage": "501"}, {"perPage": "0"}, {"perPage": "-1"}, {"perPage": "x"},
                                    {"page": "0"}, {"page": "abc"}, {"page": "1.5"}])
def test_bad_pagination_is_400(client, params):
    error = assert_error(listing(client, **params), 400, "bad_request")
    assert set(error["details"]) == set(params)


def test_empty_collection_lists_nothing(client):
    page = listing(client).get_json()
    assert page == {"items": [], "page": 1, "perPage": 30, "totalItems": 0, "totalPages": 0}


# -- bare equality, filter, sort, fields -------------------------------------------------------------
def test_bare_equality_is_typed_and_anded(seeded):
    assert titles(listing(seeded, status="published", sort="title")) == ["Alpha", "Gamma ray"]
    assert titles(listing(seeded, status="published", views="30")) == ["Gamma ray"]
    assert titles(listing(seeded, status="draft", views="30")) == []
    assert titles(listing(seeded, featured="true")) == ["Alpha"]
    assert titles(listing(seeded, score="2.5")) == ["Beta"]
    assert titles(listing(seeded, day="2026-02-01")) == ["Beta"]
    assert titles(listing(seeded, published_at="2026-02-01T08:00:00Z")) == ["Beta"]
    assert titles(listing(seeded, slug="null")) == ["Delta"]


@pytest.mark.parametrize("params,field", [
    ({"views": "abc"}, "views"), ({"views": "1.5"}, "views"), ({"views": "99999999999999999999"}, None),
    ({"featured": "1"}, "featured"), ({"featured": "yes"}, "featured"), ({"score": "x"}, "score"),
    ({"day": "2026-13-01"}, "day"), ({"published_at": "yesterday"}, "published_at"),
    ({"tags": "[]"}, "tags"), ({"nope": "1"}, "nope"), ({"title": "a\x00b"}, "title"),
])
def test_bad_bare_equality_is_400(seeded, params, field):
    resp = listing(seeded, **params)
    if field is None:  # a value no int64 column can hold: no match, never a 500
        assert resp.status_code in (200, 400), resp.get_json()
        if resp.status_code == 200:
            assert resp.get_json()["items"] == []
        return
    error = assert_error(resp, 400, "bad_request")
    assert field in error["details"] and field in error["message"]


@pytest.mark.parametrize("expr,expected", [
    ('status == "published"', ["Alpha", "Gamma ray"]),
    ("views > 10", ["Beta", "Gamma ray"]),
    ("views >= 10 && views <= 20", ["Alpha", "Beta"]),
    ('views < 15 || title == "Gamma ray"', ["Alpha", "Delta", "Gamma ray"]),
    ('!(status == "published")', ["Beta", "Delta"]),
    ("!featured", ["Beta", "Delta", "Gamma ray"]),
    ("featured == true", ["Alpha"]),
    ('title in ["Alpha", "Delta", "Nope"]', ["Alpha", "Delta"]),
    ("views in [20, 30]", ["Beta", "Gamma ray"]),
    ('title.contains("ta")', ["Beta", "Delta"]),
    ('title.startsWith("Gam")', ["Gamma ray"]),
    ('title.endsWith("ha")', ["Alpha"]),
    ('title.contains("%")', []),
    ('title.contains("_")', []),
    ("slug == null", ["Delta"]),
    ("slug != null", ["Alpha", "Beta", "Gamma ray"]),
    ("score == null", ["Delta", "Gamma ray"]),
    ('slug != "alpha"', ["Beta", "Delta", "Gamma ray"]),
    ("tags == null", ["Beta", "Delta", "Gamma ray"]),
    ('published_at > "2026-01-15T00:00:00Z"', ["Beta", "Gamma ray"]),
    ('published_at == "2026-02-01T08:00:00Z"', ["Beta"]),
    ('published_at < "2026-02-01T10:00:00+02:00"', ["Alpha"]),
    ('day >= "2026-01-02"', ["Beta"]),
    ('created_at > "2000-01-01T00:00:00Z"', ["Alpha", "Beta", "Delta", "Gamma ray"]),
    ("views == 10.0", ["Alpha"]),
    ("views == 10.5", []),
    ("views > 10.5", ["Beta", "Gamma ray"]),
    ("views < 9223372036854775808", ["Alpha", "Beta", "Delta", "Gamma ray"]),
    ("views > -99999999999999999999", ["Alpha", "Beta", "Delta", "Gamma ray"]),
    ("score > 2", ["Beta"]),
    ('title == "é😀"', []),
    ("true", ["Alpha", "Beta", "Delta", "Gamma ray"]),
    ("1 == 2", []),
])
def test_filter_expressions(seeded, expr, expected):
    assert sorted(titles(listing(seeded, filter=expr))) == expected


def test_filter_total_matches_items(seeded):
    page = listing(seeded, filter="views > 10", perPage="1").get_json()
    assert page["totalItems"] == 2 and page["totalPages"] == 2 and len(page["items"]) == 1


def test_sort(seeded):
    assert titles(listing(seeded, sort="-views,title")) == ["Gamma ray", "Beta", "Alpha", "Delta"]
    assert titles(listing(seeded, sort="views,title")) == ["Delta", "Alpha", "Beta", "Gamma ray"]
    assert titles(listing(seeded, sort="title")) == ["Alpha", "Beta", "Delta", "Gamma ray"]
    assert titles(listing(seeded, sort="-title")) == ["Gamma ray", "Delta", "Beta", "Alpha"]
    assert titles(listing(seeded, sort="created_at,title"))[0] in ("Alpha", "Beta", "Delta", "Gamma ray")
    ids = [i["id"] for i in listing(seeded, sort="id").get_json()["items"]]
    assert ids == sorted(ids)


def test_fields_selection(seeded):
    items = listing(seeded, fields="id,title", sort="title").get_json()["items"]
    assert [set(i) for i in items] == [{"id", "title"}] * 4
    post_id = items[0]["id"]
    assert seeded.get(f"{POSTS}/{post_id}?fields=title,views").get_json() == {"title": "Alpha", "views": 10}
    assert set(listing(seeded, fields="published_at").get_json()["items"][0]) == {"published_at"}


@pytest.mark.parametrize("param,value", [
    ("filter", "nope == 1"), ("filter", 'title == "a" && secret > 3'), ("filter", "auth.id == 1"),
    ("sort", "nope"), ("sort", "-nope"), ("sort", "title,nope"), ("fields", "id,nope"), ("expand", "nope"),
    ("expand", "title"),
])
def test_unknown_names_are_400_naming_them(seeded, param, value):
    error = assert_error(listing(seeded, **{param: value}), 400, "bad_request")
    name = value.split(",")[-1].lstrip("-").split()[0] if param != "filter" else \
        [w for w in ("nope", "secret", "auth.id") if w in value][0]
    assert name in error["message"] or name in str(error["details"]), error
    assert param in error["details"]


def test_unknown_names_in_view_params(seeded):
    post_id = listing(seeded).get_json()["items"][0]["id"]
    assert "nope" in assert_error(seeded.get(f"{POSTS}/{post_id}?fields=nope"), 400)["message"]
    assert "nope" in assert_error(seeded.get(f"{POSTS}/{post_id}?expand=nope"), 400)["message"]


@pytest.mark.parametrize("expr", [
    "views >", "title ==", "(views > 1", "views > 1)", "views + 1 > 2", "views > 1 ? true : false",
    'title.matches("x")', "size(title) > 1", 'title == "unterminated', "views == 'a'", 'views > "10"',
    "title > 3", 'featured == "true"', "tags == 1", "views", "title", "[1, 2]", "null", "views in 5",
    'published_at > "not a date"', "day == 5", "views == [1]", "-title == 1", 'title.contains(views)',
])
def test_invalid_filters_are_400(seeded, expr):
    error = assert_error(listing(seeded, filter=expr), 400, "bad_request")
    assert "filter" in error["details"]


# -- hostile input -----------------------------------------------------------------------------------
HOSTILE_FILTERS = [
    'title == "x\'; DROP TABLE posts; --"',
    "title == 'x\"; DROP TABLE posts; --'",
    "title == \"\\\"; DELETE FROM posts; --\"",
    "title == x'; DROP TABLE posts; --",
    "1; DROP TABLE posts",
    "title == \"a\" OR 1=1",
    "title == \"a\" || 1 == 1 --",
    "views == 1 UNION SELECT * FROM users",
    "posts.title == \"a\"",
    "\"posts\".\"title\" == \"a\"",
    "title == \"\x00\"",
    "title.contains(\"\x00\")",
    "title\x00 == \"a\"",
    "title == \"\\u0000\"",
    "title == \"é😀\u202e\"",
    "ｔｉｔｌｅ == \"a\"",
    "title == \"" + "a" * 5000 + "\"",
    " || ".join(["views == 1"] * 700),
    "(" * 200 + "views == 1" + ")" * 200,
    "!" * 300 + "featured",
    "[" * 200 + "]" * 200,
    "views in [" + ", ".join(str(i) for i in range(600)) + "]",
    "title == \"\\xff\\xfe\"",
    "title == b\"abc\"",
    "title == r\"\\\"",
    "sqlite_master.name == \"posts\"",
    "has(title)",
    "title.size() > 1",
    "{\"a\": 1}.a == 1",
    "views == 0x7fffffffffffffffff",
    "views > 1e999",
    "\ufeffviews == 1",
    "title == '''a'''",
    "title == \"\\ud800\"",  # a lone surrogate escape cannot be stored: 400, not 500
    "title.startsWith('\\udfff')",
]


@pytest.mark.parametrize("expr", HOSTILE_FILTERS, ids=range(len(HOSTILE_FILTERS)))
def test_hostile_filters_never_500(seeded, expr):
    resp = listing(seeded, filter=expr)
    assert resp.status_code in (200, 400), resp.get_data(as_text=True)[:300]
    if resp.status_code == 400:
        assert_error(resp, 400, "bad_request")
    else:
        assert set(resp.get_json()) == {"items", "page", "perPage", "totalItems", "totalPages"}
    assert listing(seeded).get_json()["totalItems"] == 4  # the table is intact


def test_hostile_values_are_stored_verbatim(client):
    nasty = "x'; DROP TABLE posts; -- \" \\ % _ é😀"
    created = create(client, {"title": nasty, "body": "'); DELETE FROM posts; --"})
    assert client.get(f"{POSTS}/{created['id']}").get_json()["title"] == nasty
    found = client.get(POSTS, query_string={"filter": f"title == {_cel_string(nasty)}"}).get_json()
    assert [i["id"] for i in found["items"]] == [created["id"]]
    assert [i["id"] for i in listing(client, title=nasty).get_json()["items"]] == [created["id"]]
    assert titles(listing(client, filter='title.contains("%")')) == [nasty]


def _cel_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("record_id", ["\x00", "a" * 500, "é" * 15, "../posts", "abc%00", "ABCDEFGHIJKLMNO"])
def test_odd_record_ids_are_404(client, record_id):
    assert_error(client.get(f"{POSTS}/{record_id}"), 404, "not_found")
    assert_error(client.patch(f"{POSTS}/{record_id}", json={"title": "x"}), 404, "not_found")
    assert_error(client.delete(f"{POSTS}/{record_id}"), 404, "not_found")


DEEP_JSON: list = []
for _ in range(70):
    DEEP_JSON = [DEEP_JSON]


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,field", [
    ({"title": "x", "views": 2**63}, "views"),
    ({"title": "x", "views": -(2**63) - 1}, "views"),
    ({"title": "x", "views": "5"}, "views"),
    ({"title": "x", "views": 1.5}, "views"),
    ({"title": "x", "views": True}, "views"),
    ({"title": "x", "views": -1}, "views"),  # min: 0
    ({"title": "x", "score": "1.5"}, "score"),
    ({"title": "x", "score": True}, "score"),
    ({"title": "x", "featured": "0"}, "featured"),
    ({"title": "x", "featured": "1"}, "featured"),
    ({"title": "x", "featured": 1}, "featured"),
    ({"title": "x", "featured": "true"}, "featured"),
    ({"title": "x", "published_at": "2026-13-01T00:00:00Z"}, "published_at"),
    ({"title": "x", "published_at": "2026-02-30T00:00:00Z"}, "published_at"),
    ({"title": "x", "published_at": "yesterday"}, "published_at"),
    ({"title": "x", "published_at": 1700000000}, "published_at"),
    ({"title": "x", "published_at": "0001-01-01T00:00:00+01:00"}, "published_at"),
    ({"title": "x", "published_at": "9999-12-31T23:59:59-01:00"}, "published_at"),
    ({"title": "x", "day": "2026-02-30"}, "day"),
    ({"title": "x", "day": "2026-1-5"}, "day"),
    ({"title": "x", "day": "2026-01-05T00:00:00Z"}, "day"),
    ({"title": "x", "contact": "not-an-email"}, "contact"),
    ({"title": "x", "contact": 5}, "contact"),
    ({"title": "x", "link": "not a url"}, "link"),
    ({"title": "x", "ref": "1234"}, "ref"),
    ({"title": "x", "status": "archived"}, "status"),
    ({"title": "x" * 201}, "title"),
    ({"title": ""}, "title"),
    ({"title": None}, "title"),
    ({"title": 5}, "title"),
    ({"title": ["x"]}, "title"),
    ({"title": "a\x00b"}, "title"),
    ({"title": "x", "tags": {"k": "a\x00b"}}, "tags"),
    ({"title": "x", "tags": {"a\x00b": 1}}, "tags"),
    ({"title": "x", "tags": DEEP_JSON}, "tags"),
    ({"title": "x", "slug": "Not A Slug"}, "slug"),
    ({"title": "x", "unknown": 1}, "unknown"),
    ({"title": "x", "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ({"title": "x", "author": "nosuchuser12345"}, "author"),
    ({"title": "x", "author": "bad id"}, "author"),
    ({}, "title"),
    ({"views": 3}, "title"),
])
def test_create_validation_is_422_per_field(client, data, field):
    error = assert_error(client.post(POSTS, json=data), 422, "validation_failed")
    assert field in error["details"], error
    assert all(isinstance(m, str) and m for m in error["details"][field])
    assert listing(client).get_json()["totalItems"] == 0


def test_validation_reports_every_bad_field(client):
    error = assert_error(client.post(POSTS, json={"views": "x", "featured": 1, "nope": 2}), 422)
    assert set(error["details"]) == {"title", "views", "featured", "nope"}


def test_update_validation(client):
    post = create(client, {"title": "x"})
    url = f"{POSTS}/{post['id']}"
    assert "title" in assert_error(client.patch(url, json={"title": None}), 422)["details"]
    assert "views" in assert_error(client.patch(url, json={"views": "1"}), 422)["details"]
    assert "nope" in assert_error(client.patch(url, json={"nope": 1}), 422)["details"]
    assert client.patch(url, json={}).status_code == 200  # nothing to change is fine
    assert client.get(url).get_json()["title"] == "x"


def test_json_values_round_trip(client):
    for value in ({"nested": [[[{"deep": True}]]], "n": -1.5, "s": "\\u0000 is text"}, [], "plain", 0, False):
        post = create(client, {"title": "j", "tags": value})
        assert client.get(f"{POSTS}/{post['id']}").get_json()["tags"] == value


def test_boundary_values_are_accepted(client):
    post = create(client, {"title": "x" * 200, "views": 2**63 - 1, "score": -1e300,
                           "published_at": "2026-01-31 12:00:00", "day": "2024-02-29",
                           "link": "http://localhost:8080/a?b=c", "contact": "a.b+c@sub.example.org"})
    got = client.get(f"{POSTS}/{post['id']}").get_json()
    assert got["views"] == 2**63 - 1 and got["score"] == -1e300 and got["published_at"] == "2026-01-31T12:00:00.000Z"
    assert titles(listing(client, filter="views == 9223372036854775807")) == ["x" * 200]


def test_unique_conflict_is_409_naming_the_field(client):
    create(client, {"title": "a", "slug": "same"})
    error = assert_error(client.post(POSTS, json={"title": "b", "slug": "same"}), 409, "conflict")
    assert "slug" in error["details"] and "slug" in error["message"]
    other = create(client, {"title": "c", "slug": "other"})
    error = assert_error(client.patch(f"{POSTS}/{other['id']}", json={"slug": "same"}), 409, "conflict")
    assert "slug" in error["details"]
    assert listing(client).get_json()["totalItems"] == 2
    create(client, {"title": "d"})
    create(client, {"title": "e"})  # several nulls do not conflict


# -- HTTP-level errors ---------------------------------------------------------------------------------
def test_body_over_the_limit_is_413(client):
    assert_error(client.post(POSTS, json={"title": "x", "body": "x" * MAX_BODY}), 413, "too_large")
    post = create(client, {"title": "x", "body": "x" * (MAX_BODY // 2)})
    assert_error(client.patch(f"{POSTS}/{post['id']}", json={"body": "x" * MAX_BODY}), 413)
    assert client.get(f"{POSTS}/{post['id']}").get_json()["body"] == "x" * (MAX_BODY // 2)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/jsonx", None])
def test_non_json_content_type_is_415(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    assert_error(client.post(POSTS, data='{"title": "x"}', **kwargs), 415, "unsupported_media_type")
    post = create(client, {"title": "x"})
    assert_error(client.patch(f"{POSTS}/{post['id']}", data='{"title": "y"}', **kwargs), 415)


def test_json_with_charset_is_accepted(client):
    resp = client.post(POSTS, data='{"title": "x"}', content_type="application/json; charset=utf-8")
    assert resp.status_code == 201


@pytest.mark.parametrize("raw", [b"{bad", b"", b"   ", b'{"title": "x",}', b"\xff\xfe", b'{"title": NaN}',
                                 b"[1, 2]", b'"title"', b"null", b"5", b'{"a": 1} {"b": 2}'])
def test_malformed_or_non_object_json_is_400(client, raw):
    error = assert_error(client.post(POSTS, data=raw, content_type="application/json"), 400)
    assert error["code"] in ("invalid_json", "bad_request")
    post = create(client, {"title": "x"})
    assert_error(client.patch(f"{POSTS}/{post['id']}", data=raw, content_type="application/json"), 400)


def test_unknown_collection_and_route_are_404(client):
    for resp in (client.get("/api/collections/nope"), client.get("/api/collections/nope/abcdefghij12345"),
                 client.post("/api/collections/nope", json={}), client.delete("/api/collections/nope/x"),
                 client.patch("/api/collections/nope/x", json={}), client.get("/api/nothing-here")):
        assert_error(resp, 404, "not_found")


def test_unknown_collection_wins_over_bad_body(client):
    assert_error(client.post("/api/collections/nope", data="text", content_type="text/plain"), 404)


def test_wrong_method_is_405(client):
    post = create(client, {"title": "x"})
    for resp in (client.put(f"{POSTS}/{post['id']}", json={}), client.delete(POSTS), client.patch(POSTS, json={}),
                 client.post(f"{POSTS}/{post['id']}", json={}), client.put(POSTS, json={})):
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers.get("Allow")


def test_users_collection_is_admins_only_by_default(client):
    assert_error(client.get("/api/collections/users/abcdefghij12345"), 404)
    assert listing(client).status_code == 200
    assert client.get("/api/collections/users").get_json()["items"] == []


# -- relations -------------------------------------------------------------------------------------------
ARTICLES = "/api/collections/articles"


def test_on_delete_cascade_and_set_null(client):
    c = client
    ann = create(c, {"name": "Ann"}, "writers")
    bob = create(c, {"name": "Bob"}, "writers")
    first = create(c, {"title": "first", "author": ann["id"], "editor": bob["id"]}, "articles")
    second = create(c, {"title": "second", "author": bob["id"], "editor": ann["id"], "parent": first["id"]},
                    "articles")
    assert c.delete(f"/api/collections/writers/{ann['id']}").status_code == 204
    assert_error(c.get(f"{ARTICLES}/{first['id']}"), 404)  # cascade
    assert c.get(f"{ARTICLES}/{second['id']}").get_json()["editor"] is None  # set_null
    assert c.get(f"{ARTICLES}/{second['id']}").get_json()["parent"] is None  # self relation, set_null


def test_on_delete_restrict_is_409(client):
    c = client
    cat = create(c, {"name": "tools"}, "categories")
    product = create(c, {"name": "hammer", "category": cat["id"]}, "products")
    error = assert_error(c.delete(f"/api/collections/categories/{cat['id']}"), 409, "conflict")
    assert error["message"]
    assert c.get(f"/api/collections/categories/{cat['id']}").status_code == 200
    assert c.delete(f"/api/collections/products/{product['id']}").status_code == 204
    assert c.delete(f"/api/collections/categories/{cat['id']}").status_code == 204


def test_relation_must_exist(client):
    error = assert_error(client.post("/api/collections/products", json={"name": "x", "category": "a" * 15}), 422)
    assert "category" in error["details"]
    assert "category" in assert_error(client.post("/api/collections/products", json={"name": "x"}), 422)["details"]


def test_expand_one_level_and_respects_view_rule(client):
    c = client
    ann = create(c, {"name": "Ann"}, "writers")
    hidden = create(c, {"name": "Hidden", "public": False}, "writers")
    p1 = create(c, {"title": "p1", "author": ann["id"], "editor": hidden["id"]}, "articles")
    create(c, {"title": "p2", "author": hidden["id"], "parent": p1["id"]}, "articles")
    create(c, {"title": "p3"}, "articles")
    listed = c.get(ARTICLES, query_string={"expand": "author,editor,parent"}).get_json()["items"]
    items = {i["title"]: i for i in listed}
    assert items["p1"]["expand"] == {"author": ann}
    assert items["p1"]["editor"] == hidden["id"]  # the id stays, the hidden record is not expanded
    assert items["p2"]["expand"] == {"parent": p1}  # one level: p1's own relations are not expanded
    assert "expand" not in items["p3"]
    viewed = c.get(f"{ARTICLES}/{p1['id']}?expand=author").get_json()
    assert viewed["expand"] == {"author": ann}
    assert_error(c.get(f"/api/collections/writers/{hidden['id']}"), 404)  # hidden by the view rule
    assert [a["name"] for a in c.get("/api/collections/writers").get_json()["items"]] == ["Ann"]


def test_expand_with_fields(client):
    c = client
    ann = create(c, {"name": "Ann"}, "writers")
    create(c, {"title": "p1", "author": ann["id"]}, "articles")
    items = c.get(ARTICLES, query_string={"expand": "author", "fields": "title,author"}).get_json()["items"]
    assert items == [{"title": "p1", "author": ann["id"], "expand": {"author": ann}}]
    # The relation is read for expansion even when `fields` leaves it out of the record itself.
    items = c.get(ARTICLES, query_string={"expand": "author", "fields": "title"}).get_json()["items"]
    assert items == [{"title": "p1", "expand": {"author": ann}}]
    record_id = c.get(ARTICLES).get_json()["items"][0]["id"]
    viewed = c.get(f"{ARTICLES}/{record_id}", query_string={"expand": "author", "fields": "id"}).get_json()
    assert viewed == {"id": record_id, "expand": {"author": ann}}


JSON_NUMBERS = {"big": 1e20, "huge": 1.5e300, "u64": 18446744073709551615, "neg": -1e19, "tiny": 1e-300,
                "int": 7, "half": 0.5, "list": [1e25, -(2**63)]}


def test_json_numbers_round_trip_on_both_databases(client):
    """PostgreSQL's jsonb keeps 1e20 as the integer 100000000000000000000: reading it back must not
    produce a Python int that the response encoder cannot write (issue 15 item 4)."""
    created = create(client, {"title": "numbers", "tags": JSON_NUMBERS})
    viewed = client.get(f"{POSTS}/{created['id']}")
    listed = listing(client)
    assert viewed.status_code == 200, viewed.get_data(as_text=True)[:300]
    assert listed.status_code == 200, listed.get_data(as_text=True)[:300]
    for tags in (created["tags"], viewed.get_json()["tags"], listed.get_json()["items"][0]["tags"]):
        assert tags == JSON_NUMBERS  # numerically equal to what was sent
        assert all(isinstance(tags[k], float) for k in ("big", "huge", "neg", "tiny", "half"))


@pytest.mark.parametrize("stored", ['{"x": 1' + "0" * 400 + "}", '[123456789012345678901234567890]', "1e400"])
def test_no_stored_json_number_breaks_a_read(client, api, stored):
    """A value written behind Alyx's back (an older version, SQL by hand) still reads."""
    created = create(client, {"title": "poisoned"})
    db = api.extensions["alyx"].db
    sql = ('UPDATE "posts" SET "tags" = json(?) WHERE "id" = ?' if db.is_sqlite
           else 'UPDATE "posts" SET "tags" = CAST(%s AS jsonb) WHERE "id" = %s')
    with db.connection():
        db.execute(sql, (stored, created["id"]))
    viewed = client.get(f"{POSTS}/{created['id']}")
    assert viewed.status_code == 200, viewed.get_data(as_text=True)[:300]
    assert listing(client).status_code == 200


def test_rules_may_read_query_parameters_that_are_not_fields(tmp_path):
    """`request.query.<k>` in a rule: `?k=` reaches the rule instead of being refused as an unknown
    field (issue 15 item 17); other unknown parameters are still 400."""
    from tests.conftest import AppMaker

    maker = AppMaker(tmp_path, dict(TEST_ENV))
    try:
        app = maker("""
collections:
  - name: shares
    fields:
      - {name: title, type: string}
      - {name: key, type: string}
    rules:
      list: "doc.key == request.query.share"
      view: "doc.key == request.query.share"
      create: "true"
""")
        c = app.test_client()
        created = create(c, {"title": "a", "key": "k1"}, "shares")
        listed = c.get("/api/collections/shares", query_string={"share": "k1"})
        assert titles(listed) == ["a"]
        assert titles(c.get("/api/collections/shares", query_string={"share": "k2"})) == []
        assert titles(c.get("/api/collections/shares")) == []
        assert c.get(f"/api/collections/shares/{created['id']}", query_string={"share": "k1"}).status_code == 200
        assert_error(c.get("/api/collections/shares", query_string={"share": "k1", "nope": "1"}), 400, "bad_request")
    finally:
        maker.close()
