"""File fields over HTTP: upload (multipart), download (ranges, ETags, safe headers), rules, protected
tokens, thumbnails, refusals, hostile names, and the crash between blob write and commit."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alyx.file_sweep import sweep_orphans
from alyx.record_files import FilePlan
from tests.helpers import assert_error

PUBLIC = '{list: "true", view: "true", create: "true", update: "true", delete: "true"}'
SCHEMA = f"""
collections:
  - name: posts
    fields:
      - {{name: title, type: string}}
      - {{name: views, type: int}}
      - {{name: cover, type: file, max_size: 20KB, mime_types: [image/*], thumbs: [10x10, 20x0, "0x16", 30x30f]}}
      - {{name: docs, type: file, multiple: true, max_files: 3}}
    rules: {PUBLIC}
  - name: secrets
    fields:
      - {{name: title, type: string}}
      - {{name: scan, type: file, protected: true}}
      - {{name: owner, type: string}}
    rules: {{list: "true", view: "auth != null && auth.id == doc.owner", create: "true", update: "true"}}
  - name: members
    fields:
      - {{name: paper, type: file, required: true, mime_types: [application/pdf]}}
    rules: {{list: "true", view: "auth != null", create: "true", update: "true", delete: "true"}}
"""
PASSWORD = "correct horse battery"
NAME = re.compile(r"[a-z0-9_]+_[a-z0-9]{10}(\.[a-z0-9]+)?")


def png(width: int = 64, height: int = 32, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n% a tiny pdf\n"


@pytest.fixture
def app(make_app):
    return make_app(SCHEMA)


@pytest.fixture
def client(app):
    return app.test_client()


def storage_root(app) -> Path:
    return app.extensions["alyx"].storage.root


def stored_keys(app) -> list[str]:
    return sorted(b.key for b in app.extensions["alyx"].storage.list())


def form(client, method: str, url: str, data: dict[str, Any], **kw: Any) -> Any:
    return client.open(url, method=method, data=data, content_type="multipart/form-data", **kw)


def create(client, collection: str = "posts", **data: Any) -> Any:
    return form(client, "POST", f"/api/collections/{collection}", data)


def token_of(client, email: str) -> tuple[str, str]:
    resp = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return body["access_token"], body["user"]["id"]


def test_upload_and_download_round_trip(app, client):
    image = png()
    resp = create(client, title="hello", cover=(io.BytesIO(image), "My Photo (1).PNG"))
    assert resp.status_code == 201, resp.get_json()
    record = resp.get_json()
    assert record["title"] == "hello" and record["docs"] == []
    assert NAME.fullmatch(record["cover"]) and record["cover"].startswith("my_photo_1_")
    assert record["cover"].endswith(".png")
    assert client.get(f"/api/collections/posts/{record['id']}").get_json()["cover"] == record["cover"]
    url = f"/api/files/posts/{record['id']}/{record['cover']}"
    got = client.get(url)
    assert got.status_code == 200 and got.data == image
    assert got.mimetype == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("inline;")
    assert got.headers["Content-Length"] == str(len(image))
    etag = got.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    part = client.get(url, headers={"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.data == image[8:16]
    assert part.headers["Content-Range"] == f"bytes 8-15/{len(image)}"
    tail = client.get(url, headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.data == image[-4:]
    assert_error(client.get(url, headers={"Range": f"bytes={len(image) + 10}-"}), 416)
    several = client.get(url, headers={"Range": "bytes=0-1,4-5"})
    assert several.status_code == 200 and several.data == image
    stale = client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"another-etag"'})
    assert stale.status_code == 200 and stale.data == image
    assert stored_keys(app) == [f"posts/{record['id']}/{record['cover']}"]


def test_json_part_and_typed_form_values(client):
    resp = create(client, **{"@json": '{"title": "from json", "views": 3}'})
    assert resp.status_code == 201 and resp.get_json()["views"] == 3 and resp.get_json()["title"] == "from json"
    resp = create(client, title="123", views="4")
    assert resp.get_json()["title"] == "123" and resp.get_json()["views"] == 4  # text stays text, int is read
    assert_error(create(client, **{"@json": "[1]"}), 400, "invalid_json")
    assert_error(client.post("/api/collections/posts", data="x", content_type="text/plain"), 415)


def test_update_adds_removes_and_replaces_files(app, client):
    record = create(client, docs=[(io.BytesIO(b"one"), "one.txt"), (io.BytesIO(b"two"), "two.txt")]).get_json()
    rid = record["id"]
    one, two = record["docs"]
    added = form(client, "PATCH", f"/api/collections/posts/{rid}", {"docs+": (io.BytesIO(PDF), "three.pdf")})
    assert added.status_code == 200, added.get_json()
    docs = added.get_json()["docs"]
    assert docs[:2] == [one, two] and docs[2].endswith(".pdf")
    assert_error(form(client, "PATCH", f"/api/collections/posts/{rid}", {"docs+": (io.BytesIO(b"4"), "4.txt")}),
                 422, "validation_failed")  # max_files: 3
    removed = form(client, "PATCH", f"/api/collections/posts/{rid}", {"docs-": one}).get_json()
    assert removed["docs"] == [two, docs[2]]
    assert f"posts/{rid}/{one}" not in stored_keys(app)
    assert client.get(f"/api/files/posts/{rid}/{one}").status_code == 404
    replaced = form(client, "PATCH", f"/api/collections/posts/{rid}", {"docs": (io.BytesIO(b"new"), "new.txt")})
    assert len(replaced.get_json()["docs"]) == 1
    assert stored_keys(app) == [f"posts/{rid}/{replaced.get_json()['docs'][0]}"]
    # JSON may keep or drop names the record has, never name other files
    kept = client.patch(f"/api/collections/posts/{rid}", json={"docs": []})
    assert kept.status_code == 200 and kept.get_json()["docs"] == [] and stored_keys(app) == []
    stranger = client.patch(f"/api/collections/posts/{rid}", json={"docs": ["../../alyx.db"]})
    assert "docs" in assert_error(stranger, 422, "validation_failed")["details"]
    cover = create(client, cover=(io.BytesIO(png()), "a.png")).get_json()
    assert client.get(f"/api/files/posts/{cover['id']}/{cover['cover']}?thumb=10x10").status_code == 200
    assert len(stored_keys(app)) == 2  # the image and its thumbnail
    swapped = form(client, "PATCH", f"/api/collections/posts/{cover['id']}",
                   {"cover": (io.BytesIO(png(color="blue")), "b.png")}).get_json()
    assert swapped["cover"] != cover["cover"]
    assert stored_keys(app) == [f"posts/{cover['id']}/{swapped['cover']}"]  # old blob and thumbnail gone


def test_delete_removes_the_blobs_after_commit(app, client):
    record = create(client, cover=(io.BytesIO(png()), "a.png"), docs=(io.BytesIO(b"x"), "x.txt")).get_json()
    assert len(stored_keys(app)) == 2
    assert client.delete(f"/api/collections/posts/{record['id']}").status_code == 204
    assert stored_keys(app) == []


def test_bulk_delete_removes_the_blobs_of_every_deleted_record(app, client):
    first = create(client, title="a", cover=(io.BytesIO(png()), "a.png")).get_json()
    second = create(client, title="b", docs=(io.BytesIO(b"x"), "x.txt")).get_json()
    kept = create(client, title="c", docs=(io.BytesIO(b"y"), "y.txt")).get_json()
    assert len(stored_keys(app)) == 3
    resp = client.delete("/api/collections/posts/bulk", json={"filter": 'title != "c"'})
    assert resp.status_code == 200 and resp.get_json() == {"count": 2}
    assert stored_keys(app) == [f"posts/{kept['id']}/{kept['docs'][0]}"]  # no orphan waits for the sweep
    assert {first["id"], second["id"]}.isdisjoint(k.split("/")[1] for k in stored_keys(app))


def test_bulk_update_may_drop_names_but_never_name_other_files(app, client):
    record = create(client, title="a", docs=(io.BytesIO(b"x"), "x.txt")).get_json()
    other = create(client, title="b", docs=(io.BytesIO(b"y"), "y.txt")).get_json()
    stranger = client.patch("/api/collections/posts/bulk", json={"filter": "true", "changes": {"docs": record["docs"]}})
    assert "docs" in assert_error(stranger, 422, "validation_failed")["details"]  # not a file of `other`
    assert len(stored_keys(app)) == 2  # the refused bulk update changed nothing
    dropped = client.patch("/api/collections/posts/bulk", json={"filter": "true", "changes": {"docs": []}})
    assert dropped.get_json() == {"count": 2}
    assert stored_keys(app) == []  # the dropped files' blobs went after the commit
    assert client.get(f"/api/collections/posts/{other['id']}").get_json()["docs"] == []


def test_size_and_type_refusals(make_app):
    app = make_app(SCHEMA, config="server:\n  max_body_bytes: 65536\n")
    client = app.test_client()
    big = png(400, 400)  # over the 20KB of cover? make sure
    big = big if len(big) > 20 * 1024 else big + b"\0" * (21 * 1024)
    error = assert_error(create(client, cover=(io.BytesIO(big), "big.png")), 413, "too_large")
    assert "cover" in error["details"]
    assert_error(create(client, docs=(io.BytesIO(b"x" * 70_000), "huge.txt")), 413)  # server.max_body_bytes
    wrong = create(client, cover=(io.BytesIO(b"<svg onload=alert(1)>"), "pic.png"))
    assert "cover" in assert_error(wrong, 422, "validation_failed")["details"]
    pdf_named_png = create(client, cover=(io.BytesIO(PDF), "pic.png"))
    assert_error(pdf_named_png, 422)
    assert "title" in assert_error(create(client, title=(io.BytesIO(b"x"), "x.txt")), 422)["details"]
    too_many = create(client, docs=[(io.BytesIO(b"%d" % i), f"{i}.txt") for i in range(4)])
    assert "docs" in assert_error(too_many, 422)["details"]
    assert "paper" in assert_error(client.post("/api/collections/members", json={}), 422)["details"]
    assert create(client, "members", paper=(io.BytesIO(PDF), "p.pdf")).status_code == 201
    assert [k.split("/")[0] for k in stored_keys(app)] == ["members"]  # nothing refused was kept


def test_hostile_names_never_become_paths(app, client):
    hostile = ["../../../../etc/passwd", "..\\..\\boot.ini", "<script>alert(1)</script>.html", ".htaccess",
               "a\0b.txt", "ünïcödé ファイル.txt", "CON", "x" * 300 + ".txt", "/abs/path.txt", "..."]
    record = create(client, docs=[(io.BytesIO(b"%d" % i), name) for i, name in enumerate(hostile[:3])]).get_json()
    names = list(record["docs"])
    for name in hostile[3:]:
        rid = create(client, docs=(io.BytesIO(b"x"), name)).get_json()
        names += rid["docs"]
    for name in names:
        assert NAME.fullmatch(name) and ".." not in name and "/" not in name, name
    root = storage_root(app)
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root)
    assert not (root.parent / "etc").exists()
    rid = record["id"]
    for bad in ["..%2F..%2Falyx.db", "%2e%2e", "..", ".", "a%00b", names[3]]:
        assert client.get(f"/api/files/posts/{rid}/{bad}").status_code == 404, bad
    assert client.get(f"/api/files/posts/{rid}/../../alyx.db").status_code == 404
    assert client.get(f"/api/files/../posts/{rid}/{names[0]}").status_code == 404
    script = client.get(f"/api/files/posts/{rid}/{names[2]}")  # an HTML upload: text, attachment, sandboxed
    assert script.status_code == 200 and script.mimetype == "text/plain"
    assert script.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in script.headers["Content-Security-Policy"]
    assert script.headers["X-Content-Type-Options"] == "nosniff"


def test_downloads_follow_the_view_rule(client):
    token, _ = token_of(client, "ann@example.com")
    record = create(client, "members", paper=(io.BytesIO(PDF), "p.pdf")).get_json()
    url = f"/api/files/members/{record['id']}/{record['paper']}"
    assert_error(client.get(url), 404)
    got = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200 and got.mimetype == "application/pdf" and got.data == PDF
    assert_error(client.get(f"/api/files/nope/{record['id']}/{record['paper']}"), 404)


def test_protected_files_need_a_short_lived_token_bound_to_the_user(app, client):
    ann, ann_id = token_of(client, "ann@example.com")
    bob, _ = token_of(client, "bob@example.com")
    record = create(client, "secrets", owner=ann_id, scan=(io.BytesIO(b"secret text"), "scan.txt")).get_json()
    url = f"/api/files/secrets/{record['id']}/{record['scan']}"
    assert_error(client.get(url), 404)  # the view rule first: anonymous callers do not see the record
    assert_error(client.get(url, headers={"Authorization": f"Bearer {ann}"}), 401)  # protected: needs ?token=
    assert_error(client.post("/api/files/token"), 401)
    issued = client.post("/api/files/token", headers={"Authorization": f"Bearer {ann}"}).get_json()
    assert issued["expires_in"] == 120
    got = client.get(f"{url}?token={issued['token']}")
    assert got.status_code == 200 and got.data == b"secret text"
    assert got.headers["Cache-Control"].startswith("private")
    bobs = client.post("/api/files/token", headers={"Authorization": f"Bearer {bob}"}).get_json()["token"]
    assert_error(client.get(f"{url}?token={bobs}"), 404)  # bound to bob: the view rule hides ann's record
    assert_error(client.get(f"{url}?token={ann}"), 401, "invalid_token")  # an access token is not a file token
    assert_error(client.get(f"{url}?token=garbage"), 401)
    files = app.extensions["alyx"].files
    files.token_ttl = -5
    with app.test_request_context():
        expired = files.issue_token(files.token_principal(issued["token"]))["token"]
    assert_error(client.get(f"{url}?token={expired}"), 401, "token_expired")


def test_thumbnails_of_listed_sizes_made_once(app, client):
    record = create(client, cover=(io.BytesIO(png(64, 32)), "a.png")).get_json()
    url = f"/api/files/posts/{record['id']}/{record['cover']}"

    def size(thumb: str) -> tuple[int, int]:
        resp = client.get(f"{url}?thumb={thumb}")
        assert resp.status_code == 200 and resp.mimetype == "image/png", resp.data[:200]
        return Image.open(io.BytesIO(resp.data)).size

    assert size("10x10") == (10, 10)  # crop
    assert size("20x0") == (20, 10)  # width, ratio kept
    assert size("0x16") == (32, 16)
    assert size("30x30f") == (30, 15)  # fit inside
    key = f"posts/{record['id']}/thumbs/10x10/{record['cover']}"
    storage = app.extensions["alyx"].storage
    first = storage.stat(key)
    assert first is not None
    size("10x10")
    assert storage.stat(key) == first  # cached, not made again
    assert_error(client.get(f"{url}?thumb=999x999"), 400)
    assert_error(client.get(f"{url}?thumb=../../x"), 400)


def test_change_events_and_hooks_carry_the_file_names(app, client):
    events = []
    app.extensions["alyx"].records.subscribe(events.append)
    record = create(client, docs=(io.BytesIO(b"x"), "x.txt")).get_json()
    assert events[-1].action == "create" and events[-1].record["docs"] == record["docs"]
    form(client, "PATCH", f"/api/collections/posts/{record['id']}", {"docs-": record["docs"][0]})
    assert events[-1].record["docs"] == [] and events[-1].previous["docs"] == record["docs"]


def test_a_crash_between_blob_and_commit_leaves_orphans_the_sweep_removes(app, client, monkeypatch):
    svc = app.extensions["alyx"]
    kept = create(client, docs=(io.BytesIO(b"keep"), "keep.txt")).get_json()
    real_insert = svc.db.insert

    def failing_insert(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(svc.db, "insert", failing_insert)
    client.application.testing = False  # the 500 is answered, not raised into the test
    assert_error(create(client, docs=(io.BytesIO(b"lost"), "lost.txt")), 500)
    assert stored_keys(app) == [f"posts/{kept['id']}/{kept['docs'][0]}"]  # a failed commit removes its blobs
    monkeypatch.setattr(FilePlan, "discard", lambda self: None)  # as if the process died before cleaning up
    assert_error(create(client, docs=(io.BytesIO(b"lost"), "lost.txt")), 500)
    monkeypatch.setattr(svc.db, "insert", real_insert)
    orphans = [k for k in stored_keys(app) if not k.startswith(f"posts/{kept['id']}/")]
    assert len(orphans) == 1
    listing = client.get("/api/collections/posts").get_json()
    assert [r["id"] for r in listing["items"]] == [kept["id"]]  # no record points at the orphan
    assert sweep_orphans(svc.records, svc.storage, grace_seconds=3600) == []  # young orphans wait
    assert sweep_orphans(svc.records, svc.storage, grace_seconds=-1) == orphans
    assert stored_keys(app) == [f"posts/{kept['id']}/{kept['docs'][0]}"]
    assert client.get(f"/api/files/posts/{kept['id']}/{kept['docs'][0]}").data == b"keep"


def test_openapi_describes_multipart_bodies(client):
    doc = client.get("/api/openapi.json").get_json()
    create_op = doc["paths"]["/api/collections/posts"]["post"]
    multipart = create_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["properties"]["cover"]["format"] == "binary"
    assert multipart["properties"]["docs"]["type"] == "array"
    assert "@json" in multipart["properties"]
    assert "/api/files/{collection}/{id}/{name}" in doc["paths"]
    assert "/api/files/token" in doc["paths"]


def test_switching_multiple_on_and_off_keeps_the_names(make_app, tmp_path):
    single = SCHEMA.replace("{name: docs, type: file, multiple: true, max_files: 3}", "{name: docs, type: file}")
    project = tmp_path / "switch"
    first = make_app(single, project=project).test_client()
    record = create(first, docs=(io.BytesIO(b"x"), "x.txt")).get_json()
    assert isinstance(record["docs"], str)
    many = make_app(SCHEMA, project=project).test_client()
    assert many.get(f"/api/collections/posts/{record['id']}").get_json()["docs"] == [record["docs"]]
    assert many.get(f"/api/files/posts/{record['id']}/{record['docs']}").data == b"x"
    again = make_app(single, project=project).test_client()
    assert again.get(f"/api/collections/posts/{record['id']}").get_json()["docs"] == record["docs"]
