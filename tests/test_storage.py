"""alyx/storage/: the local folder and an S3-compatible server (moto in server mode on loopback), one
contract for both; hostile keys; the API end to end on S3; the sweep from the command line."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer
from PIL import Image

from alyx.cli import cli
from alyx.config import load_config
from alyx.errors import ConfigError
from alyx.storage import LocalStorage, S3Storage, Storage, open_storage
from alyx.storage.names import blob_key, is_stored_name, stored_name
from alyx.storage.sniff import kind_of_name, matches, sniff
from tests.conftest import TEST_ENV, write_project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server on loopback for this module."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_settings(endpoint: str, bucket: str) -> dict[str, object]:
    return {"endpoint": endpoint, "bucket": bucket, "region": "us-east-1", "access_key": "test-key",
            "secret": "test-secret", "force_path_style": True}


def new_bucket(endpoint: str) -> S3Storage:
    storage = S3Storage(s3_settings(endpoint, f"alyx-{uuid.uuid4().hex[:12]}"))
    storage.client.create_bucket(Bucket=storage.bucket)
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    return new_bucket(request.getfixturevalue("s3_endpoint"))


def test_put_stat_read_ranges_list_delete(storage: Storage):
    data = bytes(range(256)) * 1000  # 256 KB: more than one chunk
    assert storage.put("posts/abc/file_x.bin", io.BytesIO(data), "application/octet-stream") == len(data)
    info = storage.stat("posts/abc/file_x.bin")
    assert info is not None and info.size == len(data) and info.key == "posts/abc/file_x.bin"
    assert storage.stat("posts/abc/none.bin") is None
    assert b"".join(storage.read("posts/abc/file_x.bin")) == data
    assert b"".join(storage.read("posts/abc/file_x.bin", 100, 70_000)) == data[100:70_000]
    storage.put("posts/abd/other.txt", io.BytesIO(b"x"), "text/plain")
    assert [b.key for b in storage.list("posts/abc/")] == ["posts/abc/file_x.bin"]
    assert sorted(b.key for b in storage.list()) == ["posts/abc/file_x.bin", "posts/abd/other.txt"]
    storage.delete("posts/abc/file_x.bin")
    storage.delete("posts/abc/file_x.bin")  # twice: not an error
    assert [b.key for b in storage.list()] == ["posts/abd/other.txt"]


def test_s3_uploads_large_files_in_parts_and_aborts_a_failed_one(s3_endpoint: str):
    storage = new_bucket(s3_endpoint)
    storage.single_put_max = storage.part_size = 5 * 1024 * 1024  # S3's smallest part
    data = os.urandom(11 * 1024 * 1024 + 123)  # three parts, the last one short
    stream = io.BytesIO(b"head" + data)
    stream.seek(4)  # put sends from the stream's position on
    assert storage.put("posts/abc/big_x.bin", stream, "application/octet-stream") == len(data)
    assert b"".join(storage.read("posts/abc/big_x.bin")) == data
    assert b"".join(storage.read("posts/abc/big_x.bin", 5_000_000, 10_500_000)) == data[5_000_000:10_500_000]

    class Breaks(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 6 * 1024 * 1024:
                raise OSError("disk gone")
            return super().read(size)

    with pytest.raises(OSError):
        storage.put("posts/abc/cut_x.bin", Breaks(data), "application/octet-stream")
    assert storage.stat("posts/abc/cut_x.bin") is None
    assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []


def test_s3_puts_carry_their_md5_and_stream_unsigned(s3_endpoint: str):
    """S3 checks each PUT against the Content-MD5 put computes; botocore neither hashes the payload
    (1 MB reads) nor frames it as aws-chunked with a CRC32 trailer (1 MB chunks): the body streams."""
    storage = new_bucket(s3_endpoint)
    sent: list[dict[str, str]] = []
    storage.client.meta.events.register("before-send.s3.PutObject",
                                        lambda request, **_: sent.append(dict(request.headers.items())))
    data = os.urandom(300_000)
    storage.put("posts/abc/x_y.bin", io.BytesIO(data), "application/octet-stream")
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[0].items()}
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "aws-chunked" not in headers.get("content-encoding", "") and "x-amz-trailer" not in headers
    assert b"".join(storage.read("posts/abc/x_y.bin")) == data


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", ".hidden/x", "a\\..\\b",
                                 "a/b\0c", "", "a/..", "posts/../../../alyx.db"])
def test_hostile_keys_are_refused(storage: Storage, key: str):
    with pytest.raises(ValueError):
        storage.put(key, io.BytesIO(b"x"), "text/plain")
    with pytest.raises(ValueError):
        storage.stat(key)
    with pytest.raises(ValueError):
        storage.delete(key)


def test_local_storage_never_leaves_its_folder(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "storage"
    (root / "posts").mkdir(parents=True)
    (root / "posts" / "link").symlink_to(outside)  # a link planted inside the folder
    storage = LocalStorage(root)
    with pytest.raises(ValueError):
        storage.put("posts/link/x.txt", io.BytesIO(b"x"), "text/plain")
    assert list(outside.iterdir()) == []


def test_stored_names_are_safe_and_keep_the_original_readable():
    assert stored_name("My Photo (1).PNG", "png").startswith("my_photo_1_")
    for hostile in ["../../etc/passwd", "..\\..\\x.exe", "\0", "", ".", "..", "a/b/c.txt", "ünï.txt", "x" * 500]:
        name = stored_name(hostile, "")
        assert is_stored_name(name), (hostile, name)
        blob_key("posts", "abc", name)  # a valid key
    assert stored_name("x.tar.gz", "")[-3:] == ".gz" and stored_name("evil.html", "txt").endswith(".txt")
    assert not is_stored_name("../x") and not is_stored_name(".x") and not is_stored_name("a/b")


def test_types_come_from_the_content():
    assert sniff(b"\x89PNG\r\n\x1a\n....").mime == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0").mime == "image/jpeg"
    assert sniff(b"%PDF-1.7").mime == "application/pdf"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ").mime == "image/webp"
    assert sniff(b"<html><script>alert(1)</script>", "html").mime == "text/plain"
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "svg").mime == "text/plain"
    assert sniff(b"a,b\n1,2\n", "csv").mime == "text/csv"
    assert sniff(b"\x00\x01\x02binary").mime == "application/octet-stream"
    assert kind_of_name("photo_abc.png").mime == "image/png" and kind_of_name("x.html").mime == \
        "application/octet-stream"
    assert matches("image/png", ("image/*",)) and not matches("text/plain", ("image/*", "application/pdf"))
    assert matches("text/plain", ())


def test_storage_settings(tmp_path: Path, s3_endpoint: str):
    local = open_storage(load_config(write_project(tmp_path / "a", ""), env={}))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "a" / "data" / "storage").resolve()
    project = write_project(tmp_path / "b", "", f"storage:\n  s3:\n    endpoint: {s3_endpoint}\n"
                            "    bucket: alyx-conf\n    force_path_style: true\n")
    assert isinstance(open_storage(load_config(project, env={})), S3Storage)
    bad = write_project(tmp_path / "c", "", "storage:\n  s3:\n    endpont: x\n    bucket: b\n")
    with pytest.raises(ConfigError, match="storage.s3: unknown key"):
        open_storage(load_config(bad, env={}))


SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: cover, type: file, mime_types: [image/*], thumbs: [8x8]}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""


@pytest.fixture
def s3_app(make_app, s3_endpoint: str):
    bucket = new_bucket(s3_endpoint)
    config = ("storage:\n  s3:\n" + "".join(f"    {k}: {str(v).lower() if isinstance(v, bool) else v}\n"
                                             for k, v in s3_settings(s3_endpoint, bucket.bucket).items()))
    return make_app(SCHEMA, config=config), bucket


def test_the_api_on_s3(s3_app):
    app, bucket = s3_app
    client = app.test_client()
    out = io.BytesIO()
    Image.new("RGB", (40, 20), "green").save(out, "PNG")
    image = out.getvalue()
    resp = client.post("/api/collections/posts", data={"cover": (io.BytesIO(image), "g.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    record = resp.get_json()
    key = f"posts/{record['id']}/{record['cover']}"
    assert [b.key for b in bucket.list()] == [key]
    url = f"/api/files/posts/{record['id']}/{record['cover']}"
    got = client.get(url)
    assert got.status_code == 200 and got.data == image and got.mimetype == "image/png"
    part = client.get(url, headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.data == image[:8]
    thumb = client.get(f"{url}?thumb=8x8")
    assert Image.open(io.BytesIO(thumb.data)).size == (8, 8)
    assert len(list(bucket.list())) == 2
    assert client.delete(f"/api/collections/posts/{record['id']}").status_code == 204
    assert list(bucket.list()) == []


def test_sweep_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = write_project(tmp_path / "p", SCHEMA)
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    storage = LocalStorage(project / "data" / "storage")
    storage.put("posts/abcdefghijklmno/orphan_x.png", io.BytesIO(b"x"), "image/png")
    storage.put("gone/abcdefghijklmno/orphan_y.png", io.BytesIO(b"y"), "image/png")
    partial = project / "data" / "storage" / "posts" / ".upload-cut-short"
    partial.write_bytes(b"half")
    runner = CliRunner()
    young = runner.invoke(cli, ["--project", str(project), "files", "sweep"])
    assert young.exit_code == 0, young.output
    assert "0 orphan blob(s)" in young.output  # within storage.sweep_grace: kept
    swept = runner.invoke(cli, ["--project", str(project), "files", "sweep", "--older-than", "0s"])
    assert swept.exit_code == 0 and "2 orphan blob(s) deleted from local storage" in swept.output
    assert list(storage.list()) == [] and not partial.exists()


def test_s3_under_gunicorn_gevent_workers(live_server, s3_endpoint: str):
    """The real server: gevent workers forked from a master that built the services (STACK.md)."""
    import json

    import requests

    bucket = new_bucket(s3_endpoint)
    settings = s3_settings(s3_endpoint, bucket.bucket)
    server = live_server(SCHEMA, workers=1, env={"ALYX_STORAGE_S3": json.dumps(settings)})
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, "PNG")
    created = requests.post(f"{server.url}/api/collections/posts", files={"cover": ("b.png", out.getvalue())},
                            timeout=30)
    assert created.status_code == 201, created.text
    record = created.json()
    got = requests.get(f"{server.url}/api/files/posts/{record['id']}/{record['cover']}", timeout=30)
    assert got.status_code == 200 and got.content == out.getvalue()
    assert [b.key for b in bucket.list()] == [f"posts/{record['id']}/{record['cover']}"]
