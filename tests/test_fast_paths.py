"""The shortcuts of the hot paths give what peewee's own calls give, on SQLite and PostgreSQL:
prepared INSERT text (Database.insert), prepared select-by-id (Collection.fetch_by_id), the
fromisoformat DateTimeField, new_id, and the default list order (creation order)."""
from __future__ import annotations

import datetime as dt
import os
import re
import threading

import peewee

from alyx.fields.registry import lookup
from alyx.models import DateTimeField, new_id

SCHEMA = """
collections:
  - name: things
    fields:
      - {name: title, type: string}
      - {name: tags, type: json}
      - {name: views, type: int}
      - {name: score, type: float}
      - {name: flag, type: bool}
      - {name: at, type: datetime}
      - {name: day, type: date}
      - {name: status, type: select, values: [draft, published], index: true}
      - {name: parent, type: relation, collection: things, on_delete: set_null}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""

VALUES = [
    {"title": "a", "tags": {"k": [1, "x", None]}, "views": 3, "score": 1.5, "flag": True,
     "at": dt.datetime(2026, 1, 2, 3, 4, 5, 678000), "day": dt.date(2026, 1, 2), "status": "draft"},
    {"title": None, "tags": [1, 2], "views": None, "score": None, "flag": False, "at": None, "day": None},
    {"title": "c", "tags": "text", "views": 0, "score": 2, "flag": None, "at": dt.datetime(2026, 1, 2)},
    {"title": "d", "tags": 123, "status": "published"},
    {"title": "e", "tags": None, "status": "published"},
]
# Values of another type than the column's: each goes through its field's db_value, as peewee's would.
COERCED = [
    {"title": 5, "views": "7", "at": "2026-01-02 03:04:05"},
    {"title": "f", "views": True, "flag": 1, "at": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)},
]


def _raw(svc, model, record_id):
    table = model._meta.table_name
    cursor = svc.db.peewee.execute_sql(f'SELECT * FROM "{table}" WHERE id = {svc.db.peewee.param}', (record_id,))
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    row.pop("id")
    return row


def test_prepared_insert_stores_what_peewee_stores(make_app) -> None:
    svc = make_app(SCHEMA).extensions["alyx"]
    model = svc.models["things"]
    now = dt.datetime(2026, 5, 6, 7, 8, 9, 123456)
    with svc.db.connection():
        for values in VALUES + COERCED:
            row = {**values, "created_at": now, "updated_at": now}
            mine, theirs = new_id(), new_id()
            with svc.db.write():
                svc.db.insert(model, {"id": mine, **row})
                model.insert({"id": theirs, **row}).execute()
            assert _raw(svc, model, mine) == _raw(svc, model, theirs)
            fields = model._meta.sorted_fields
            expected = model.select(*fields).where(model.id == theirs).dicts().get()
            coll = svc.records.collection("things")
            assert coll.fetch_by_id(svc.db.peewee, mine, fields) == {**expected, "id": mine}
            shown = coll.fetch_by_id(svc.db.peewee, mine, coll.visible_columns, as_json=True)
            assert list(shown.items()) == list(coll.serialize({**expected, "id": mine}).items())
        assert coll.fetch_by_id(svc.db.peewee, "x" * 15, fields) is None
        assert coll.fetch_by_id(svc.db.peewee, "x" * 15, coll.visible_columns, as_json=True) is None


def test_stored_datetime_text_reads_to_its_json_form_like_the_long_way() -> None:
    kind, column = lookup("datetime"), DateTimeField()
    read = kind.stored_to_json(column)
    texts = ["2026-11-29 14:03:23.123456", "2026-11-29 14:03:23", "0999-01-01 00:00:00.000999", "2026-11-29 14:03:23.1",
             "2026-W48-7 14:03:23.123456", "2026-11-29 14:03:23.1+0100", "2026-11-29 14:03:23+02:00",
             "2026-13-29 14:03:23",
             "2026-11-29T14:03:23.123456", "2026-11-29 14-03-23.123456", "2026-11-29 14:03:23,123456", "not a date",
             "", "x" * 26, dt.datetime(2026, 1, 1, 1, 1, 1, 999), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)]
    for text in texts:
        assert read(text) == kind.to_json(column.python_value(text)), text


def test_default_list_order_is_creation_order(make_app) -> None:
    client = make_app(SCHEMA).test_client()
    created = []
    for i in range(12):
        resp = client.post("/api/collections/things", json={"title": f"t{i}", "status": ("draft", "published")[i % 2]})
        assert resp.status_code == 201
        created.append(resp.get_json()["id"])
    listed = [r["id"] for r in client.get("/api/collections/things?perPage=5&page=2").get_json()["items"]]
    assert listed == created[5:10]
    published = client.get('/api/collections/things?filter=status == "published"&perPage=50').get_json()
    assert [r["id"] for r in published["items"]] == created[1::2] and published["totalItems"] == 6
    by_id = [r["id"] for r in client.get("/api/collections/things?sort=id&perPage=50").get_json()["items"]]
    assert by_id == sorted(created)


def test_datetime_field_reads_like_peewee() -> None:
    mine, theirs = DateTimeField(), peewee.DateTimeField()
    for text in ["2026-11-29 14:03:23.123456", "2026-11-29 14:03:23", "2026-11-29 14:03:23.1", "2026-11-29",
                 "2026-11-29T14:03:23", "2026-11-29 14:03:23+02:00", "not a date", "", None,
                 dt.datetime(2026, 1, 1, 1, 1, 1)]:
        assert mine.python_value(text) == theirs.python_value(text), text


def test_new_id_shape() -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[a-z0-9]{15}", i) for i in ids)
    assert set("".join(ids)) == set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_new_ids_are_unique_across_threads() -> None:
    """Ids come from a batch shared by every thread: none is ever handed out twice."""
    per_thread: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        into.extend(new_id() for _ in range(3000))

    threads = [threading.Thread(target=take, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything) == 24_000


def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    new_id()  # the parent has a batch of ids ready
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out at once (no pytest teardown in the child)
        os.write(write_end, " ".join(new_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_id() for _ in range(20)}
    assert len(child) == 20 and not child & parent
