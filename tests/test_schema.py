"""schema.yaml (DESIGN.md §3): every type and option, system fields, indexes, and clear errors."""
from __future__ import annotations

import re
import textwrap

import pytest

from alyx.app import create_app
from alyx.config import load_config
from alyx.errors import ConfigError
from alyx.schema import FIELD_TYPES, parse_schema
from tests.conftest import TEST_ENV, write_project
from tests.helpers import assert_error

PUBLIC = '{list: "true", view: "true", create: "true", update: "true", delete: "true"}'
EVERYTHING = f"""
collections:
  - name: things
    fields:
      - {{name: s, type: string, required: true, min: 2, max: 5, pattern: "^[a-z]+$"}}
      - {{name: t, type: text, max: 10}}
      - {{name: i, type: int, min: -5, max: 5, default: 1, index: true}}
      - {{name: f, type: float, min: 0.5, max: 1.5}}
      - {{name: b, type: bool, default: true}}
      - {{name: dt, type: datetime, default: "2026-01-01T00:00:00Z"}}
      - {{name: d, type: date, default: "2026-01-02"}}
      - {{name: j, type: json, default: {{k: [1, 2]}}}}
      - {{name: e, type: email, unique: true}}
      - {{name: u, type: url}}
      - {{name: id2, type: uuid}}
      - {{name: sel, type: select, values: [a, b], default: a}}
      - {{name: owner, type: relation, collection: owners, on_delete: restrict}}
      - {{name: other, type: relation, collection: owners}}
      - {{name: pic, type: file, max_size: 1MB, mime_types: [image/*], thumbs: [50x50]}}
    indexes:
      - {{fields: [sel, i], unique: true}}
      - {{fields: [b, created_at], name: by_flag}}
    rules: {PUBLIC}
  - name: owners
    fields:
      - {{name: name, type: string}}
    rules: {PUBLIC}
"""


def test_every_type_and_option_parses():
    schema = parse_schema(EVERYTHING)
    things = schema.get("things")
    assert {f.type for f in things.fields} == set(FIELD_TYPES)
    s = things.field("s")
    assert (s.required, s.min, s.max, s.pattern) == (True, 2, 5, "^[a-z]+$")
    assert things.field("i").default == 1 and things.field("i").index
    assert things.field("j").default == {"k": [1, 2]}
    assert things.field("e").unique
    assert things.field("sel").values == ("a", "b")
    owner = things.field("owner")
    assert (owner.collection, owner.on_delete) == ("owners", "restrict")
    assert things.field("other").on_delete == "set_null"  # the default
    assert [(i.fields, i.unique) for i in things.indexes] == [(("sel", "i"), True), (("b", "created_at"), False)]
    assert things.indexes[1].name == "by_flag"
    assert things.rules["list"] == "true"
    assert schema.get("users").auth  # the default auth collection always exists


UPSTREAM_QUICKSTART = """
collections:
  - name: users
    fields:
      - name: email
        type: string
        required: true
        unique: true
      - name: name
        type: string
        required: true
"""


def test_the_upstream_quickstart_schema_declares_email_compatibly(make_app):
    users = parse_schema(UPSTREAM_QUICKSTART).collections["users"]
    email = users.field("email")
    assert (email.type, email.required, email.unique, email.max) == ("email", True, True, 254)
    assert [f.name for f in users.public_fields].count("email") == 1
    client = make_app(UPSTREAM_QUICKSTART).test_client()
    r = client.post("/api/auth/register", json={"email": "Ada@Example.com", "password": "correct horse 1"})
    assert r.status_code == 422 and "name" in r.json["error"]["details"]
    r = client.post("/api/auth/register", json={"email": "ada@example.com", "password": "correct horse 1",
                                                 "name": "Ada"})
    assert r.status_code == 201, r.json
    assert r.json["user"]["name"] == "Ada"
    again = client.post("/api/auth/register", json={"email": "ada@example.com", "password": "correct horse 1",
                                                     "name": "Ada"})
    assert again.status_code == 409


def test_users_collection_exists_by_default_and_can_be_extended():
    assert [f.name for f in parse_schema("").get("users").fields] == ["email", "password_hash", "role", "verified"]
    users = parse_schema("collections:\n  - name: users\n    auth: true\n    fields:\n"
                         "      - {name: bio, type: text}\n")
    assert [f.name for f in users.get("users").fields][-1] == "bio"


@pytest.fixture
def things(make_app):
    return make_app(EVERYTHING)


def test_everything_round_trips_over_http(things):
    client = things.test_client()
    owner = client.post("/api/collections/owners", json={"name": "o"}).get_json()
    created = client.post("/api/collections/things", json={
        "s": "abc", "t": "text", "f": 1.0, "e": "x@example.com", "u": "https://example.com",
        "id2": "123e4567-e89b-12d3-a456-426614174000", "owner": owner["id"]})
    assert created.status_code == 201, created.get_json()
    record = created.get_json()
    assert list(record)[:3] == ["id", "created_at", "updated_at"]  # system fields first
    assert re.fullmatch(r"[a-z0-9]{15}", record["id"])
    assert record["i"] == 1 and record["b"] is True and record["sel"] == "a"  # defaults
    assert record["dt"] == "2026-01-01T00:00:00.000Z" and record["d"] == "2026-01-02"
    assert record["j"] == {"k": [1, 2]} and record["owner"] == owner["id"] and record["other"] is None
    restrict = client.delete(f"/api/collections/owners/{owner['id']}")
    assert_error(restrict, 409, "conflict")
    # the composite unique index (sel, i) holds
    dup = client.post("/api/collections/things", json={"s": "abd", "f": 1.0})
    assert_error(dup, 409, "conflict")
    assert client.post("/api/collections/things", json={"s": "abd", "f": 1.0, "i": 2}).status_code == 201


@pytest.mark.parametrize("data,field", [
    ({"s": "a"}, "s"), ({"s": "abcdef"}, "s"), ({"s": "AB1"}, "s"), ({"s": "ab", "t": "x" * 11}, "t"),
    ({"s": "ab", "i": 6}, "i"), ({"s": "ab", "i": -6}, "i"), ({"s": "ab", "f": 0.4}, "f"), ({"s": "ab", "f": 2}, "f"),
    ({"s": "ab", "sel": "c"}, "sel"), ({"s": "ab", "b": None, "j": 1}, None),
])
def test_options_are_enforced(things, data, field):
    resp = things.test_client().post("/api/collections/things", json=data)
    if field is None:
        assert resp.status_code == 201, resp.get_json()  # optional fields accept null, json any value
        return
    assert field in assert_error(resp, 422, "validation_failed")["details"]


def test_indexes_exist_in_the_database(things):
    svc = things.extensions["alyx"]
    with svc.db.connection():
        indexes = {i.name: (tuple(i.columns), bool(i.unique)) for i in svc.db.peewee.get_indexes("things")}
    assert indexes["idx_things_i"] == (("i",), False)
    assert indexes["uq_things_e"] == (("e",), True)
    assert indexes["uq_things_sel_i"] == (("sel", "i"), True)
    assert indexes["by_flag"] == (("b", "created_at"), False)
    assert indexes["idx_things_owner"] == (("owner",), False)  # relations are indexed
    assert indexes["idx_things_created_at"] == (("created_at",), False)


# -- errors -------------------------------------------------------------------------------------------
BAD_SCHEMAS = [
    # (schema text, fragments the one-line message must contain)
    ("collections: [\n", ["schema.yaml:", "not valid YAML"]),
    ("collections:\n  - name: a\n    name: b\n", ["schema.yaml:3", "duplicate key 'name'", "line 2"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: strin}\n",
     ["schema.yaml:4", "type", "'strin'", "expected one of", "string"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, bogus: 1}\n",
     ["schema.yaml:4", "unknown key 'bogus'", "expected one of"]),
    ("collections:\n  - name: a\n    colour: red\n", ["schema.yaml:3", "unknown key 'colour'"]),
    ("colections: []\n", ["schema.yaml:1", "unknown key 'colections'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: relation, collection: nope}\n",
     ["schema.yaml:4", "field 'x'", "unknown collection 'nope'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: relation}\n",
     ["schema.yaml:4", "collection: <name>"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string}\n      - {name: x, type: int}\n",
     ["schema.yaml:5", "'x' is declared twice"]),
    ("collections:\n  - name: a\n  - name: a\n", ["schema.yaml:3", "'a' is declared twice"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: int, default: abc}\n",
     ["schema.yaml:4", "default", "Not a valid integer"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: int, min: abc}\n",
     ["schema.yaml:4", "min", "expected an integer or a number", "'abc'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: int, min: 5, max: 1}\n",
     ["schema.yaml:4", "min (5) is greater than max (1)"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, max: 1.5}\n",
     ["schema.yaml:4", "max", "whole number"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: json, max: 3}\n",
     ["schema.yaml:4", "do not apply to json"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: bool, pattern: x}\n",
     ["schema.yaml:4", "pattern does not apply"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, required: 'yes'}\n",
     ["schema.yaml:4", "required", "expected true or false", "'yes'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: select}\n", ["schema.yaml:4", "values"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, values: [a]}\n",
     ["schema.yaml:4", "values only apply to select"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: select, values: [a], default: b}\n",
     ["schema.yaml:4", "default", "'b'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, pattern: '('}\n",
     ["schema.yaml:4", "pattern", "invalid regular expression"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: relation, collection: users, on_delete: zap}\n",
     ["schema.yaml:4", "on_delete", "cascade, set_null, restrict", "'zap'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, on_delete: cascade}\n",
     ["schema.yaml:4", "only apply to relation"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: relation, collection: users, required: true}\n",
     ["schema.yaml:4", "set_null"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: id, type: string}\n",
     ["schema.yaml:4", "'id' is reserved"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: created_at, type: datetime}\n", ["reserved"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: in, type: string}\n",
     ["schema.yaml:4", "'in'", "reserved"]),
    ("collections:\n  - name: Bad-Name\n", ["schema.yaml:2", "invalid collection name 'Bad-Name'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: Bad, type: string}\n", ["schema.yaml:4", "'Bad'"]),
    ("collections: 5\n", ["schema.yaml:1", "collections", "expected a list"]),
    ("collections:\n  - 5\n", ["schema.yaml:1", "collections[0]", "expected a mapping"]),
    ("collections:\n  - name: a\n    fields: {x: 1}\n", ["schema.yaml:3", "fields", "expected a list"]),
    ("collections:\n  - name: a\n    fields:\n      - {type: string}\n",
     ["schema.yaml:4", "missing required key 'name'"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x}\n", ["schema.yaml:4", "missing required key 'type'"]),
    ("collections:\n  - name: a\n    indexes:\n      - {fields: [nope]}\n", ["schema.yaml:4", "unknown field 'nope'"]),
    ("collections:\n  - name: a\n    indexes:\n      - {fields: []}\n", ["schema.yaml:4", "non-empty list"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, index: true}\n"
     "    indexes:\n      - {fields: [x]}\n", ["schema.yaml:6", "'idx_a_x' is declared twice"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string}\n"
     "    indexes:\n      - {fields: [x], name: 'x; DROP TABLE a'}\n", ["schema.yaml:6", "invalid index name"]),
    ("collections:\n  - name: a\n    rules: {list: 5}\n", ["schema.yaml:3", "rules.list", "CEL expression"]),
    ("collections:\n  - name: a\n    rules: {lst: 'true'}\n", ["schema.yaml:3", "unknown key 'lst'"]),
    ("collections:\n  - name: a\n    auth: true\n", ["schema.yaml:3", "only the 'users' collection"]),
    ("collections:\n  - name: users\n    fields:\n      - {name: email, type: int}\n",
     ["schema.yaml:4", "'email' is one the auth collection has already", "type email or string, required and unique"]),
    ("collections:\n  - name: users\n    fields:\n      - {name: email, type: string, unique: false}\n",
     ["schema.yaml:4", "must stay compatible"]),
    ("collections:\n  - name: users\n    fields:\n      - {name: password_hash, type: string}\n",
     ["schema.yaml:4", "'password_hash' is managed by Alyx"]),
    ("collections:\n  - name: users\n    fields:\n      - {name: role, type: select, values: [member]}\n",
     ["schema.yaml:4", "values that include user and admin"]),
    ("collections:\n  - name: users\n    fields:\n      - {name: email, type: email}\n"
     "      - {name: email, type: email}\n",
     ["schema.yaml:5", "'email' is declared twice"]),
    ("collections:\n  - {name: a, fields: [{name: b, type: relation, collection: c}]}\n"
     "  - {name: c, fields: [{name: d, type: relation, collection: a}]}\n", ["cycle", "a -> c -> a"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: file, thumbs: [big]}\n",
     ["schema.yaml:4", "thumbs must be a list of sizes"]),
    ("collections:\n  - name: a\n    fields:\n      - {name: x, type: string, max_size: 5MB}\n",
     ["schema.yaml:4", "max_size only applies to file fields"]),
]


@pytest.mark.parametrize("text,fragments", BAD_SCHEMAS, ids=range(len(BAD_SCHEMAS)))
def test_bad_schema_is_one_clear_config_error(text, fragments):
    with pytest.raises(ConfigError) as info:
        parse_schema(text)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_rule_that_does_not_compile_stops_the_app(tmp_path):
    bad = {"unknown name": ("doc.nope == 1", "unknown name 'doc.nope'"), "syntax": ("auth.id ==", "syntax error"),
           "type": ('doc.n > "x"', "cannot be compared")}
    for i, (rule, expected) in enumerate(bad.values()):
        project = write_project(tmp_path / f"p{i}", f"""
            collections:
              - name: notes
                fields:
                  - {{name: n, type: int}}
                rules: {{list: '{rule}'}}
            """)
        with pytest.raises(ConfigError) as info:
            create_app(load_config(project, env=TEST_ENV))
        assert "'notes'" in str(info.value) and "'list'" in str(info.value) and expected in str(info.value)


def test_bad_schema_stops_the_app_with_the_file_named(tmp_path):
    project = write_project(tmp_path / "p", "collections:\n  - name: a\n    fields:\n      - {name: x, type: nope}\n")
    with pytest.raises(ConfigError) as info:
        create_app(load_config(project, env=TEST_ENV))
    assert str(info.value).startswith(f"{project / 'schema.yaml'}:4:")


def test_unquoted_yaml_dates_are_valid_defaults():
    schema = parse_schema("collections:\n  - name: a\n    fields:\n      - {name: d, type: date, default: 2026-01-02}\n"
                          "      - {name: t, type: datetime, default: 2026-01-02T03:04:05Z}\n")
    assert schema.get("a").field("d").default == "2026-01-02"
    assert schema.get("a").field("t").default.startswith("2026-01-02T03:04:05")


def test_relations_may_point_forwards_and_to_themselves():
    schema = parse_schema(textwrap.dedent("""
        collections:
          - name: a
            fields:
              - {name: b, type: relation, collection: b}
              - {name: parent, type: relation, collection: a}
          - name: b
        """))
    assert schema.get("a").field("b").collection == "b"
