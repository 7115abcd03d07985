"""Access rules through HTTP: the authorisation matrix (operation × caller × allowed/denied), rule
semantics (anonymous callers, admins-only default, run-time errors, rules SQL cannot express), and
filter/rule injection attempts that must be 400s — never SQL, never 500."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alyx.errors import ConfigError
from tests.conftest import empty_tables, shared_app
from tests.helpers import assert_error

PASSWORD = "correct horse battery"

SCHEMA = """
collections:
  - name: users
    auth: true
    fields:
      - {name: name, type: string}
  - name: notes
    fields:
      - {name: title, type: string, required: true}
      - {name: owner, type: relation, collection: users}
      - {name: public, type: bool, default: false}
      - {name: locked, type: bool, default: false}
      - {name: editors, type: json}
    rules:
      list: "doc.public || (auth != null && doc.owner == auth.id)"
      view: "doc.public || (auth != null && doc.owner == auth.id)"
      create: "auth != null && doc.owner == auth.id"
      update: "auth != null && doc.owner == auth.id && !doc.locked"
      delete: "auth != null && doc.owner == auth.id && !doc.locked"
  - name: vault
    fields:
      - {name: secret, type: string}
  - name: drafts
    fields:
      - {name: title, type: string}
      - {name: owner, type: relation, collection: users}
    rules:
      list: "auth.id == doc.owner"
      view: "!(auth.id != doc.owner)"
      create: "auth == null"
  - name: shared
    fields:
      - {name: title, type: string}
      - {name: editors, type: json}
      - {name: rank, type: int}
    rules:
      list: "auth != null && auth.id in doc.editors"
      view: "auth != null && auth.id in doc.editors"
      update: "auth != null && auth.id in doc.editors && doc.rank > 0"
      delete: "auth != null && auth.id in doc.editors"
      create: "true"
  - name: tickets
    fields:
      - {name: title, type: string}
      - {name: owner, type: relation, collection: users}
    rules:
      view: "auth != null && doc.owner == auth.id"
      create: "auth != null && request.body.owner == auth.id"
      update: "auth != null && doc.owner == auth.id && request.body.owner == null"
  - name: events
    fields:
      - {name: title, type: string}
      - {name: at, type: datetime}
    rules:
      list: "doc.at > request.query.since"
      view: "doc.at > request.query.since"
"""


class World:
    """Three users (owner, other, admin) with tokens, and the owner's notes."""

    def __init__(self, app) -> None:
        self.app = app
        self.c = app.test_client()
        svc = app.extensions["alyx"]
        svc.auth.create_admin("admin@example.com", PASSWORD)
        self.tokens = {"anonymous": None}
        self.ids = {}
        for who in ("owner", "other"):
            body = self.c.post("/api/auth/register", json={"email": f"{who}@example.com", "password": PASSWORD})
            assert body.status_code == 201, body.get_json()
            self.tokens[who] = body.get_json()["access_token"]
            self.ids[who] = body.get_json()["user"]["id"]
        admin = self.c.post("/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD}).get_json()
        self.tokens["admin"] = admin["access_token"]
        self.ids["admin"] = admin["user"]["id"]
        self.notes = {}
        for key, public, locked in (("private", False, False), ("public", True, False), ("locked", False, True)):
            resp = self.call("owner", "post", "/api/collections/notes",
                             json={"title": key, "owner": self.ids["owner"], "public": public, "locked": locked})
            assert resp.status_code == 201, resp.get_json()
            self.notes[key] = resp.get_json()["id"]

    def call(self, who: str, method: str, path: str, **kwargs):
        token = self.tokens[who]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return getattr(self.c, method)(path, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def matrix_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One app per backend for the module's World tests; each test starts from empty tables."""
    with shared_app(request.param, tmp_path_factory.mktemp("rules"), SCHEMA) as app:
        yield app


@pytest.fixture
def world(matrix_app) -> World:
    empty_tables(matrix_app)
    return World(matrix_app)


CALLERS = ("anonymous", "owner", "other", "admin")


def test_list_matrix(world):
    expected = {"anonymous": {"public"}, "owner": {"private", "public", "locked"}, "other": {"public"},
                "admin": {"private", "public", "locked"}}
    for who in CALLERS:
        resp = world.call(who, "get", "/api/collections/notes", query_string={"perPage": 2})
        assert resp.status_code == 200, (who, resp.get_json())
        page = resp.get_json()
        assert page["totalItems"] == len(expected[who]), (who, page)  # counts only visible rows
        assert page["totalPages"] == (len(expected[who]) + 1) // 2
        seen = {i["title"] for i in page["items"]}
        if page["totalPages"] > 1:
            nxt = world.call(who, "get", "/api/collections/notes", query_string={"perPage": 2, "page": 2})
            seen |= {i["title"] for i in nxt.get_json()["items"]}
        assert seen == expected[who], who
        # a user filter narrows inside what the rule allows, never beyond
        filtered = world.call(who, "get", "/api/collections/notes", query_string={"filter": "public == false"})
        assert {i["title"] for i in filtered.get_json()["items"]} == expected[who] - {"public"}, who


@pytest.mark.parametrize("note", ["private", "public"])
def test_view_matrix(world, note):
    allowed = {"private": {"owner", "admin"}, "public": set(CALLERS)}[note]
    for who in CALLERS:
        resp = world.call(who, "get", f"/api/collections/notes/{world.notes[note]}")
        if who in allowed:
            assert resp.status_code == 200 and resp.get_json()["title"] == note, (who, resp.get_json())
        else:
            assert_error(resp, 404, "not_found")  # hidden records do not exist for this caller


def test_create_matrix(world):
    owner_id = world.ids["owner"]
    cases = [  # (caller, owner field, expected status)
        ("anonymous", owner_id, 403), ("anonymous", None, 403),
        ("owner", owner_id, 201), ("owner", world.ids["other"], 403),
        ("other", owner_id, 403), ("other", world.ids["other"], 201),
        ("admin", owner_id, 201),
    ]
    for who, owner, status in cases:
        resp = world.call(who, "post", "/api/collections/notes", json={"title": "n", "owner": owner})
        if status == 201:
            assert resp.status_code == 201 and resp.get_json()["owner"] == owner, (who, resp.get_json())
        else:
            assert_error(resp, 403, "forbidden")


@pytest.mark.parametrize("op", ["update", "delete"])
def test_update_and_delete_matrix(world, op):
    # private: hidden from anonymous/other (404); public: visible to all, changeable by owner/admin (403 else);
    # locked: visible to the owner, but the rule forbids changing it (403), admins bypass.
    expected = {
        "private": {"anonymous": 404, "owner": 200, "other": 404, "admin": 200},
        "public": {"anonymous": 403, "owner": 200, "other": 403, "admin": 200},
        "locked": {"anonymous": 404, "owner": 403, "other": 404, "admin": 200},
    }
    order = ["anonymous", "other", "owner", "admin"]  # denied callers first: the record must still be there
    for note, by_caller in expected.items():
        record_id = world.notes[note]
        for who in order:
            status = by_caller[who]
            path = f"/api/collections/notes/{record_id}"
            resp = world.call(who, "patch", path, json={"title": f"{note} by {who}"}) if op == "update" \
                else world.call(who, "delete", path)
            if status == 200:
                if op == "update":
                    assert resp.status_code == 200 and resp.get_json()["title"] == f"{note} by {who}"
                else:
                    assert resp.status_code == 204, (note, who, resp.get_json())
                    break  # gone
            else:
                assert_error(resp, status, "not_found" if status == 404 else "forbidden")
                stored = world.call("admin", "get", path)
                assert stored.status_code == 200, (note, who)  # a denied call changed nothing
                assert stored.get_json()["title"].startswith(note) and not stored.get_json()["title"].endswith(who)


def test_no_rule_means_admins_only(world):
    for who in ("anonymous", "owner", "other"):
        listed = world.call(who, "get", "/api/collections/vault")
        assert listed.status_code == 200 and listed.get_json()["items"] == [] and listed.get_json()["totalItems"] == 0
        assert_error(world.call(who, "post", "/api/collections/vault", json={"secret": "x"}), 403, "forbidden")
    made = world.call("admin", "post", "/api/collections/vault", json={"secret": "x"})
    assert made.status_code == 201
    path = f"/api/collections/vault/{made.get_json()['id']}"
    for who in ("anonymous", "owner", "other"):
        assert_error(world.call(who, "get", path), 404)
        assert_error(world.call(who, "patch", path, json={"secret": "y"}), 404)
        assert_error(world.call(who, "delete", path), 404)
    assert world.call("admin", "get", "/api/collections/vault").get_json()["totalItems"] == 1
    assert world.call("admin", "delete", path).status_code == 204


def test_auth_fields_of_anonymous_callers_never_match_null_columns(world):
    # `auth.id == doc.owner` must not show ownerless drafts to anonymous callers (NULL == NULL),
    # and `!(auth.id != doc.owner)` must not either: auth.id of null is an error, and errors deny.
    made = world.call("anonymous", "post", "/api/collections/drafts", json={"title": "ownerless"})
    assert made.status_code == 201  # create: "auth == null" works for anonymous callers
    assert_error(world.call("owner", "post", "/api/collections/drafts", json={"title": "x"}), 403)
    listed = world.call("anonymous", "get", "/api/collections/drafts").get_json()
    assert listed["items"] == [] and listed["totalItems"] == 0
    assert_error(world.call("anonymous", "get", f"/api/collections/drafts/{made.get_json()['id']}"), 404)
    assert world.call("admin", "get", "/api/collections/drafts").get_json()["totalItems"] == 1


def test_rules_sql_cannot_express_are_evaluated_per_record_with_correct_pages(world):
    owner, other = world.ids["owner"], world.ids["other"]
    titles = []
    for i in range(9):
        editors = [owner] if i % 3 else [other]
        if i == 4:
            editors = [other, owner]
        resp = world.call("admin", "post", "/api/collections/shared",
                          json={"title": f"s{i}", "editors": editors, "rank": i})
        assert resp.status_code == 201
        titles.append((resp.get_json()["id"], f"s{i}", editors))
    mine = [t for _, t, e in titles if owner in e]
    assert len(mine) == 6
    pages = []
    for page in (1, 2, 3, 4):
        resp = world.call("owner", "get", "/api/collections/shared",
                          query_string={"perPage": 2, "page": page, "sort": "rank"})
        body = resp.get_json()
        assert resp.status_code == 200 and body["totalItems"] == 6 and body["totalPages"] == 3, body
        pages.append([i["title"] for i in body["items"]])
    assert sum(pages, []) == mine
    assert world.call("owner", "get", "/api/collections/shared",
                      query_string={"skipTotal": "1", "perPage": 3, "sort": "rank"}).get_json()["items"][2]["title"] \
        == mine[2]
    filtered = world.call("owner", "get", "/api/collections/shared",
                          query_string={"filter": "rank >= 4", "sort": "rank"})
    assert [i["title"] for i in filtered.get_json()["items"]] == [t for t in mine if int(t[1:]) >= 4]
    assert world.call("anonymous", "get", "/api/collections/shared").get_json()["totalItems"] == 0
    hidden_id = next(i for i, _, e in titles if owner not in e)
    visible_id = next(i for i, t, e in titles if owner in e and t != "s0")
    assert_error(world.call("owner", "get", f"/api/collections/shared/{hidden_id}"), 404)
    assert world.call("owner", "get", f"/api/collections/shared/{visible_id}").status_code == 200
    assert_error(world.call("owner", "patch", f"/api/collections/shared/{hidden_id}", json={"title": "x"}), 404)
    assert world.call("owner", "patch", f"/api/collections/shared/{visible_id}", json={"title": "y"}).status_code == 200
    assert world.call("admin", "get", "/api/collections/shared").get_json()["totalItems"] == 9


def test_a_rule_that_errors_at_run_time_denies(world):
    made = world.call("admin", "post", "/api/collections/events", json={"title": "e", "at": "2026-01-01T00:00:00Z"})
    path = f"/api/collections/events/{made.get_json()['id']}"
    assert world.call("anonymous", "get", path, query_string={"since": "2025-01-01T00:00:00Z"}).status_code == 200
    assert_error(world.call("anonymous", "get", path, query_string={"since": "2027-01-01T00:00:00Z"}), 404)
    # not a date, or missing: the comparison is an error, and the error denies (404, not 500)
    assert_error(world.call("anonymous", "get", path, query_string={"since": "garbage"}), 404)
    assert_error(world.call("anonymous", "get", path), 404)
    listed = world.call("anonymous", "get", "/api/collections/events")
    assert listed.status_code == 200 and listed.get_json()["items"] == []


def test_rules_see_the_request_body(world):
    owner, other = world.ids["owner"], world.ids["other"]
    assert_error(world.call("owner", "post", "/api/collections/tickets", json={"title": "t"}), 403)
    made = world.call("owner", "post", "/api/collections/tickets", json={"title": "t", "owner": owner})
    assert made.status_code == 201
    path = f"/api/collections/tickets/{made.get_json()['id']}"
    assert world.call("owner", "patch", path, json={"title": "renamed"}).status_code == 200
    # the owner may edit, but not hand the ticket to someone else (the body names owner)
    assert_error(world.call("owner", "patch", path, json={"owner": other}), 403, "forbidden")
    assert world.call("admin", "get", path).get_json()["owner"] == owner


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("rule, fragment", [
    ("doc.nope == 1", "unknown name 'doc.nope'"),
    ("auth.id ==", "syntax error"),
    ("doc.title > 3", "title is a string field"),
    ("auth.password == 'x'", "unknown name"),
    ("doc.password_hash != ''", "unknown name"),
])
def test_a_rule_that_does_not_compile_stops_start_up(make_app, rule, fragment, backend):
    schema = f"""
    collections:
      - name: posts
        fields:
          - {{name: title, type: string}}
        rules:
          update: "{rule}"
    """
    with pytest.raises(ConfigError) as info:
        make_app(schema)
    message = str(info.value)
    assert "'posts'" in message and "'update'" in message and fragment in message, message


# -- injection ------------------------------------------------------------------------------------
INJECTIONS = [
    "title == 'x' OR 1=1",
    "title == \"x\"; DROP TABLE notes; --",
    "title == 'x'' OR ''1''=''1'",
    "title == 'a' UNION SELECT password_hash FROM users",
    "1=1",
    "title == 'x' /* comment */",
    "password_hash != ''",
    "owner.password_hash == 'x'",
    "auth.role == 'admin'",
    "title == 'x' || true) OR (1=1",
    "size(title) > 0",
    "title.matches('.*')",
    "title == 'x' ? true : false",
    "views + 1 > 0",
    "'" * 5000,
    "(" * 300 + "true" + ")" * 300,
    "!" * 2000 + "public",
    " || ".join(["public"] * 3000),
    " && ".join(f"title != 'x{i}'" for i in range(2000)),
    "title in [" + ",".join(f"'{i}'" for i in range(600)) + "]",
    "\x00",
    "title == '\x00'",
    "",
    "   ",
]


def _nested(depth: int) -> str:
    text = "public"
    for _ in range(depth):
        text = f"!({text} && public)"
    return text


@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_filter_injection_attempts_are_400_never_sql_never_500(world, who):
    for text in INJECTIONS + [_nested(40), _nested(25)]:
        resp = world.call(who, "get", "/api/collections/notes", query_string={"filter": text})
        if text.strip():
            assert_error(resp, 400)
        else:
            assert resp.status_code in (200, 400)
    for param in ("sort", "fields", "expand"):
        for text in ("title; DROP TABLE notes", "title--", "password_hash", "-(title)", "owner.email"):
            assert_error(world.call(who, "get", "/api/collections/notes", query_string={param: text}), 400)
    # quotes inside a CEL string literal are just characters of the value: a bound parameter, no match
    for text in ('title == "\\" OR 1=1 --"', "title == 'x\\' OR 1=1 --'", 'title == "private\'--"'):
        resp = world.call(who, "get", "/api/collections/notes", query_string={"filter": text})
        assert resp.status_code == 200 and resp.get_json()["items"] == [], (text, resp.get_json())
    # everything is still there
    assert world.call("admin", "get", "/api/collections/notes").get_json()["totalItems"] == 3


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=200),
    st.text(alphabet="()!&|=<>'\"\\ .,[]-0123456789abcdeflnprstuxy_", max_size=120),
    st.lists(st.sampled_from(["title", "public", "==", "!=", "&&", "||", "!", "(", ")", "'x'", "\"y\"", "1",
                              "true", "null", "in", "[", "]", ",", "owner", "auth.id", ".contains(", "DROP"]),
             max_size=40).map(" ".join),
))
def test_fuzzed_filters_never_500(world, text):
    resp = world.call("owner", "get", "/api/collections/notes", query_string={"filter": text})
    assert resp.status_code in (200, 400), (text, resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.status_code == 400:
        assert_error(resp, 400)
    else:
        titles = {i["title"] for i in resp.get_json()["items"]}
        assert titles <= {"private", "public", "locked"}
