"""Migrations (DESIGN.md §3) on SQLite and PostgreSQL: safe steps at start with existing rows kept,
destructive steps refused until `alyx migrate apply --allow-destructive`, and a history of every step."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from alyx.config import load_config
from alyx.errors import ConfigError
from alyx.services import build_services
from tests.conftest import ROOT, TEST_ENV, write_project

PUBLIC = '{list: "true", view: "true", create: "true", update: "true", delete: "true"}'
V1 = f"""
collections:
  - name: authors
    fields:
      - {{name: name, type: string}}
    rules: {PUBLIC}
  - name: posts
    fields:
      - {{name: title, type: string, required: true}}
      - {{name: n, type: int}}
      - {{name: author, type: relation, collection: authors, on_delete: cascade}}
      - {{name: editor, type: relation, collection: authors, on_delete: set_null}}
    rules: {PUBLIC}
"""


def with_fields(schema: str, *lines: str, after: str = "{name: n, type: int}") -> str:
    """The schema with field lines added to posts after the field `after`."""
    assert after in schema
    added = "".join(f"\n      - {line}" for line in lines)
    return schema.replace(after, after + added, 1)


@pytest.fixture
def project(tmp_path):
    return tmp_path / "project"


@pytest.fixture
def build(make_app, project):
    """Build (and keep) an app for a schema on the same project and database; the previous one is closed."""
    built = []

    def factory(schema: str):
        if built:
            built[-1].extensions["alyx"].close()
        app = make_app(schema, project=project)
        built.append(app)
        return app

    return factory


def post(app, data, collection="posts"):
    resp = app.test_client().post(f"/api/collections/{collection}", json=data)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def rows(app, collection="posts", sort="title"):
    resp = app.test_client().get(f"/api/collections/{collection}", query_string={"sort": sort, "perPage": "500"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"]


def history(app):
    svc = app.extensions["alyx"]
    with svc.db.connection():
        cursor = svc.db.peewee.execute_sql(
            "SELECT collection, action, detail, destructive FROM _alyx_migrations ORDER BY id")
        return [(c, a, d, bool(x)) for c, a, d, x in cursor.fetchall()]


def pending(app):
    svc = app.extensions["alyx"]
    with svc.db.connection():
        return [(s.action, s.destructive) for s in svc.migrator().plan().steps]


def indexes(app, table="posts"):
    svc = app.extensions["alyx"]
    with svc.db.connection():
        return {i.name: (tuple(i.columns), bool(i.unique)) for i in svc.db.peewee.get_indexes(table)}


def seed(app):
    ann = post(app, {"name": "Ann"}, "authors")
    bob = post(app, {"name": "Bob"}, "authors")
    post(app, {"title": "one", "n": 1, "author": ann["id"], "editor": bob["id"]})
    post(app, {"title": "two", "n": 22, "author": bob["id"]})
    post(app, {"title": "three"})
    return ann, bob


def apply_all(project, database_env) -> list[str]:
    """What `alyx migrate apply --allow-destructive` does, in process (faster than the CLI)."""
    services = build_services(load_config(project, env={**TEST_ENV, **database_env}), migrate=False)
    try:
        with services.db.connection():
            migrator = services.migrator()
            plan = migrator.plan()
            migrator.apply(plan, allow_destructive=True)
            assert migrator.plan().steps == []
            return [step.action for step in plan.steps]
    finally:
        services.close()


def cli(project, database_env, *args):
    env = {**os.environ, **TEST_ENV, **database_env, "ALYX_PROJECT_DIR": str(project)}
    return subprocess.run([sys.executable, "-m", "alyx", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


# -- safe ----------------------------------------------------------------------------------------------
def test_first_start_creates_everything_and_records_it(build):
    app = build(V1)
    assert pending(app) == []
    steps = history(app)
    assert sorted((c, a) for c, a, _, _ in steps) == [("authors", "create_collection"), ("posts", "create_collection"),
                                                      ("users", "create_collection")]
    assert not any(d for *_, d in steps)
    assert {"idx_posts_created_at", "idx_posts_author", "idx_posts_editor"} <= set(indexes(app))


def test_safe_changes_apply_at_start_and_existing_rows_survive(build):
    app = build(V1)
    ann, bob = seed(app)
    before = {r["title"]: r for r in rows(app)}
    v2 = with_fields(V1.replace("{name: n, type: int}", "{name: n, type: int, index: true}"),
                     "{name: flag, type: bool, default: true}", "{name: note, type: string, default: hi}",
                     "{name: when, type: datetime, default: '2026-01-01T00:00:00Z'}",
                     "{name: extra, type: float}", "{name: must, type: string, required: true}",
                     "{name: code, type: string, unique: true}",
                     after="{name: n, type: int, index: true}")
    v2 += "    indexes:\n      - {fields: [n, flag]}\n"
    v2 += f"  - name: tags\n    fields:\n      - {{name: label, type: string}}\n    rules: {PUBLIC}\n"
    app = build(v2)
    after = {r["title"]: r for r in rows(app)}
    assert set(after) == {"one", "two", "three"}
    for title, old in before.items():
        new = after[title]
        assert {k: new[k] for k in old} == old  # every old value (ids and timestamps included) is kept
        assert (new["flag"], new["note"], new["when"]) == (True, "hi", "2026-01-01T00:00:00.000Z")  # defaults
        assert new["extra"] is None and new["must"] is None and new["code"] is None
    assert after["one"]["author"] == ann["id"] and after["one"]["editor"] == bob["id"]
    assert indexes(app)["idx_posts_n"] == (("n",), False)
    assert indexes(app)["uq_posts_code"] == (("code",), True)
    assert indexes(app)["idx_posts_n_flag"] == (("n", "flag"), False)
    assert post(app, {"label": "x"}, "tags")["label"] == "x"
    assert pending(app) == []
    new_steps = [(c, a) for c, a, _, d in history(app)[3:]]
    assert ("tags", "create_collection") in new_steps
    assert new_steps.count(("posts", "add_field")) == 6
    assert new_steps.count(("posts", "add_index")) == 3
    # the new required field is required for new writes, and filters see the defaults
    assert app.test_client().post("/api/collections/posts", json={"title": "x"}).status_code == 422
    assert len(app.test_client().get("/api/collections/posts?filter=flag == true").get_json()["items"]) == 3


def test_unique_index_over_duplicates_is_a_clear_error(build):
    app = build(V1)
    seed(app)
    post(app, {"title": "one", "n": 1})
    v2 = V1.replace("{name: title, type: string, required: true}", "{name: title, type: string, required: true, "
                    "unique: true}")
    v2 = with_fields(v2, "{name: flag, type: bool, default: true}")
    with pytest.raises(ConfigError) as info:
        build(v2)
    message = str(info.value)
    assert "uq_posts_title" in message and "'posts'" in message and "duplicate" in message and "title" in message
    app = build(V1)  # nothing was half applied: the old schema still matches
    assert pending(app) == [] and len(rows(app)) == 4 and "flag" not in rows(app)[0]
    dup = [r for r in rows(app) if r["title"] == "one"][0]
    assert app.test_client().delete(f"/api/collections/posts/{dup['id']}").status_code == 204
    app = build(v2)
    assert indexes(app)["uq_posts_title"] == (("title",), True)


# -- destructive ---------------------------------------------------------------------------------------
DESTRUCTIVE = {
    "drop_field": V1.replace("      - {name: n, type: int}\n", ""),
    "drop_collection": V1.replace("      - {name: editor, type: relation, collection: authors, on_delete: set_null}\n",
                                  "") + f"  - name: extra\n    rules: {PUBLIC}\n",
    "rename_field": V1.replace("{name: n, type: int}", "{name: count, type: int, renamed_from: n}"),
    "change_type": V1.replace("{name: n, type: int}", "{name: n, type: string}"),
}


@pytest.mark.parametrize("change", sorted(DESTRUCTIVE))
def test_destructive_change_is_refused_at_start(build, change):
    base = DESTRUCTIVE["drop_collection"] if change == "drop_collection" else V1
    app = build(base)
    seed(app) if change != "drop_collection" else None
    if change == "drop_collection":
        post(app, {}, "extra")
        target = base.replace(f"  - name: extra\n    rules: {PUBLIC}\n", "")
    else:
        target = DESTRUCTIVE[change]
    before = history(app)
    with pytest.raises(ConfigError) as info:
        build(target)
    message = str(info.value)
    assert "alyx migrate apply --allow-destructive" in message and "alyx migrate status" in message
    assert "DESTRUCTIVE" in message
    app = build(base)  # nothing changed
    assert history(app) == before and pending(app) == []


def test_destructive_steps_listed_and_applied_by_the_cli(build, project, database_env):
    app = build(V1)
    ann, _ = seed(app)
    app.extensions["alyx"].close()
    v2 = V1.replace("{name: title, type: string, required: true}",
                    "{name: heading, type: string, required: true, renamed_from: title}")
    v2 = v2.replace("      - {name: editor, type: relation, collection: authors, on_delete: set_null}\n", "")
    v2 = v2.replace("{name: n, type: int}", "{name: n, type: string}")
    v2 = with_fields(v2, "{name: flag, type: bool, default: false}", after="{name: n, type: string}")
    write_project(project, v2)

    status = cli(project, database_env, "migrate", "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "rename field 'title' to 'heading'" in out and "drop field 'editor'" in out
    assert "change type of 'n' from int to string" in out and "add field 'flag'" in out
    assert out.count("[DESTRUCTIVE]") == 3 and "alyx migrate apply --allow-destructive" in out

    refused = cli(project, database_env, "migrate", "apply")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--allow-destructive" in refused.stderr

    applied = cli(project, database_env, "migrate", "apply", "--allow-destructive")
    assert applied.returncode == 0, applied.stderr
    assert "step(s) applied" in applied.stdout and applied.stdout.count("applied [DESTRUCTIVE]") == 3
    assert "Pending: nothing" in cli(project, database_env, "migrate", "status").stdout

    app = build(v2)
    after = {r["heading"]: r for r in rows(app, sort="heading")}
    assert set(after) == {"one", "two", "three"}
    assert (after["one"]["n"], after["two"]["n"], after["three"]["n"]) == ("1", "22", None)  # converted
    assert all("editor" not in r and "title" not in r and r["flag"] is False for r in after.values())
    assert after["one"]["author"] == ann["id"]
    steps = history(app)[3:]
    assert {(a, d) for _, a, _, d in steps} == {("rename_field", True), ("drop_field", True), ("change_type", True),
                                                 ("add_field", False), ("drop_index", False)}
    # the relation that survived the rebuild still cascades, and its index is still there
    assert app.test_client().delete(f"/api/collections/authors/{ann['id']}").status_code == 204
    assert set(after) - {r["heading"] for r in rows(app, sort="heading")} == {"one"}
    assert "idx_posts_author" in indexes(app) and "idx_posts_editor" not in indexes(app)


def test_drop_collection_and_history(build, project, database_env):
    schema = V1 + f"  - name: extra\n    fields:\n      - {{name: x, type: int}}\n    rules: {PUBLIC}\n"
    app = build(schema)
    post(app, {"x": 1}, "extra")
    seed(app)
    app.extensions["alyx"].close()
    write_project(project, V1)
    assert apply_all(project, database_env) == ["drop_collection"]
    app = build(V1)
    svc = app.extensions["alyx"]
    with svc.db.connection():
        assert "extra" not in svc.db.peewee.get_tables()
    assert history(app)[-1][:2] == ("extra", "drop_collection") and history(app)[-1][3] is True
    assert len(rows(app)) == 3
    assert app.test_client().get("/api/collections/extra").status_code == 404


@pytest.mark.parametrize("old,new,values,expected", [
    ("string", "int", ["12", "x", " 7 ", None], [12, None, 7, None]),
    ("int", "float", [1, -3, None], [1.0, -3.0, None]),
    ("string", "bool", ["true", "0", "maybe"], [True, False, None]),
    ("float", "string", [1.5], ["1.5"]),
    ("string", "datetime", ["2026-01-01T10:00:00Z", "nope"], ["2026-01-01T10:00:00.000Z", None]),
    ("string", "json", ['{"a": 1}', "plain"], [{"a": 1}, "plain"]),
])
def test_type_changes_convert_values(build, project, database_env, old, new, values, expected):
    schema = f"collections:\n  - name: posts\n    fields:\n      - {{name: title, type: string}}\n" \
             f"      - {{name: v, type: {old}}}\n    rules: {PUBLIC}\n"
    app = build(schema)
    for i, value in enumerate(values):
        post(app, {"title": f"r{i}", "v": value})
    app.extensions["alyx"].close()
    changed = schema.replace(f"{{name: v, type: {old}}}", f"{{name: v, type: {new}}}")
    write_project(project, changed)
    assert apply_all(project, database_env) == ["change_type"]
    app = build(changed)
    assert [r["v"] for r in rows(app)] == expected


def test_history_lists_every_step_once(build):
    app = build(V1)
    first = history(app)
    app = build(V1)  # restart without changes: no new steps
    assert history(app) == first
    app = build(with_fields(V1, "{name: a, type: int}", "{name: b, type: text}"))
    added = history(app)[len(first):]
    assert [(c, a, d) for c, a, _, d in added] == [("posts", "add_field", False)] * 2
    assert ["add field 'a' (int)", "add field 'b' (text)"] == [d for _, _, d, _ in added]


def test_on_delete_change_is_planned(build):
    app = build(V1)
    ann, _ = seed(app)
    changed = V1.replace("collection: authors, on_delete: cascade", "collection: authors, on_delete: restrict")
    app = build(changed)
    assert pending(app) == []
    resp = app.test_client().delete(f"/api/collections/authors/{ann['id']}")
    assert resp.status_code == 409, "on_delete: restrict must hold after the schema changed"
    assert len(rows(app)) == 3


def test_type_change_keeps_the_fields_indexes(build, project, database_env):
    indexed = V1.replace("{name: n, type: int}", "{name: n, type: int, unique: true}")
    app = build(indexed)
    seed(app)
    app.extensions["alyx"].close()
    write_project(project, indexed.replace("type: int, unique", "type: float, unique"))
    assert apply_all(project, database_env) == ["change_type"]
    app = build(indexed.replace("type: int, unique", "type: float, unique"))
    assert indexes(app)["uq_posts_n"] == (("n",), True)
    assert sorted(r["n"] for r in rows(app) if r["n"] is not None) == [1.0, 22.0]


def test_relation_retarget_is_destructive(build, project, database_env):
    app = build(V1)
    _, bob = seed(app)
    retargeted = V1.replace("{name: editor, type: relation, collection: authors, on_delete: set_null}",
                            "{name: editor, type: relation, collection: users, on_delete: set_null}")
    with pytest.raises(ConfigError, match="point 'editor' at 'users' instead of 'authors'"):
        build(retargeted)
    app.extensions["alyx"].close()
    write_project(project, retargeted)
    assert apply_all(project, database_env) == ["change_relation"]
    app = build(retargeted)
    assert all(r["editor"] is None for r in rows(app))  # no user has those ids
    assert pending(app) == [] and "idx_posts_editor" in indexes(app)
    assert app.test_client().delete(f"/api/collections/authors/{bob['id']}").status_code == 204


def test_dropping_related_collections_together(build, project, database_env):
    schema = V1 + f"""  - name: alpha
    fields:
      - {{name: name, type: string}}
    rules: {PUBLIC}
  - name: beta
    fields:
      - {{name: alpha, type: relation, collection: alpha, on_delete: restrict}}
    rules: {PUBLIC}
"""
    # the referenced collection sorts first: it must not be dropped before the one pointing at it
    app = build(schema)
    zone = post(app, {"name": "z"}, "alpha")
    post(app, {"alpha": zone["id"]}, "beta")
    app.extensions["alyx"].close()
    write_project(project, V1)
    assert sorted(apply_all(project, database_env)) == ["drop_collection", "drop_collection"]
    app = build(V1)
    svc = app.extensions["alyx"]
    with svc.db.connection():
        assert not {"alpha", "beta"} & set(svc.db.peewee.get_tables())


def test_rename_and_type_change_together(build, project, database_env):
    app = build(V1)
    seed(app)
    changed = V1.replace("{name: n, type: int}", "{name: label, type: string, renamed_from: n}")
    with pytest.raises(ConfigError, match="rename field 'n' to 'label'"):
        build(changed)
    app.extensions["alyx"].close()
    write_project(project, changed)
    assert apply_all(project, database_env) == ["rename_field", "change_type"]
    app = build(changed)
    assert sorted(str(r["label"]) for r in rows(app)) == ["1", "22", "None"]
    assert post(app, {"title": "four", "label": "text now"})["label"] == "text now"
