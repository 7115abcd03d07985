"""WAL checkpoints in the background (alyx/db_checkpoint.py): commits only append, the loop copies back."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.config import load_config
from alyx.db import Database
from alyx.db_checkpoint import WAL_BACKSTOP_PAGES, Checkpointer
from tests.conftest import AppFactory


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(load_config(str(tmp_path)))
    with database.connection():
        database.execute("CREATE TABLE t (v TEXT)")
    yield database
    database.close()


def write_pages(db: Database, rows: int) -> None:
    """``rows`` commits of one ~3 KB row each: a page or more of WAL per commit."""
    with db.connection():
        for i in range(rows):
            with db.write():
                db.execute("INSERT INTO t VALUES (?)", (f"{i:06d}" * 500,))


def wait_for(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_commit_does_not_checkpoint_below_the_backstop(db: Database) -> None:
    with db.connection():
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_BACKSTOP_PAGES
    write_pages(db, 1500)  # past SQLite's default of 1,000 pages: it would have checkpointed by now
    assert db.checkpointer is not None
    done = db.checkpointer.checkpoint()
    assert done.busy == 0 and done.wal_frames >= 1500  # every frame was still in the WAL
    assert done.copied_frames == done.wal_frames  # and the checkpoint copied them all back
    with db.connection():
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1500


def test_the_loop_keeps_copying_the_wal_back(db: Database) -> None:
    assert db.checkpointer is not None
    db.start_checkpoints()
    write_pages(db, 50)
    wait_for(lambda: (last := db.checkpointer.last) is not None and last.copied_frames == last.wal_frames > 0)
    db.close()  # stops it
    assert not db.checkpointer.loop.running and db.checkpointer._conn is None


def test_the_loop_stops_when_the_database_file_is_gone_and_never_creates_one(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    path.write_bytes(b"")
    checkpointer = Checkpointer(str(path), every=0.01)
    path.unlink()
    checkpointer.start()
    wait_for(lambda: not checkpointer.loop.running)
    assert not path.exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_app_checkpoints_from_its_start_and_stops_at_close(make_app: AppFactory) -> None:
    app = make_app()
    svc = app.extensions["alyx"]
    assert svc.db.checkpointer is not None and svc.db.checkpointer.loop.running
    client = app.test_client()
    for i in range(5):
        assert client.post("/api/collections/posts", json={"title": f"post {i}"}).status_code == 201
    wait_for(lambda: (last := svc.db.checkpointer.last) is not None and last.copied_frames == last.wal_frames > 0)
    svc.close()
    assert not svc.db.checkpointer.loop.running


def test_postgresql_has_no_checkpointer(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALYX_DATABASE_URL", pg_url)
    database = Database(load_config(str(tmp_path)))
    assert database.checkpointer is None
    database.start_checkpoints()  # nothing to start
    database.close()
