"""Database.write(): one transaction for nested writes, rolled back and unlocked on any error."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from alyx.config import load_config
from alyx.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(load_config(str(tmp_path)))
    database.peewee.connect()
    database.execute("CREATE TABLE t (v INTEGER)")
    yield database
    if not database.peewee.is_closed():
        database.peewee.close()
    database.close()


def values(db: Database) -> list[int]:
    return [row[0] for row in db.execute("SELECT v FROM t ORDER BY v").fetchall()]


def other_thread_can_write(db: Database) -> bool:
    """Whether another thread gets the write lock and commits within a second."""
    done = threading.Event()

    def write() -> None:
        with db.connection(), db.write():
            db.execute("INSERT INTO t VALUES (100)")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done.wait(1)


def test_nested_writes_join_the_outer_transaction(db: Database) -> None:
    with db.write():
        db.execute("INSERT INTO t VALUES (1)")
        with db.write():
            db.execute("INSERT INTO t VALUES (2)")
        assert db.peewee.transaction_depth() == 1  # the inner one was a savepoint of it
    assert not db.peewee.in_transaction()
    assert values(db) == [1, 2]


def test_an_error_rolls_back_and_releases_the_lock(db: Database) -> None:
    with pytest.raises(ValueError), db.write():
        db.execute("INSERT INTO t VALUES (1)")
        raise ValueError("boom")
    assert values(db) == []
    assert not db.peewee.in_transaction()
    assert other_thread_can_write(db)
    assert values(db) == [100]


def test_a_failing_begin_releases_the_lock(db: Database) -> None:
    db.peewee.close()  # no connection: BEGIN cannot run
    with pytest.raises(peewee.InterfaceError), db.write():
        pass
    db.peewee.connect()
    assert other_thread_can_write(db)


def test_all_or_nothing_runs_folded_work_before_commit_and_rolls_back_when_it_fails(db: Database) -> None:
    with db.write(all_or_nothing=True):
        db.execute("INSERT INTO t VALUES (1)")
        with db.write():  # joins as it is: no savepoint
            assert db.before_commit(lambda: db.execute("INSERT INTO t VALUES (2)"))
    assert values(db) == [1, 2]

    def fail() -> None:
        db.execute("INSERT INTO t VALUES (4)")
        raise RuntimeError("folded work failed")

    with pytest.raises(RuntimeError), db.write(all_or_nothing=True):
        db.execute("INSERT INTO t VALUES (3)")
        db.before_commit(fail)
    assert values(db) == [1, 2]
    assert not db.peewee.in_transaction()
    assert other_thread_can_write(db)


def test_before_commit_outside_an_all_or_nothing_transaction_says_so(db: Database) -> None:
    with db.write():
        assert db.before_commit(lambda: None) is False
