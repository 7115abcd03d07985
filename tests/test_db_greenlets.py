"""Each greenlet gets its own peewee connection state, even when peewee was imported before the
gevent patch (as in gunicorn's master, which runs migrations before workers fork and patch)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import sys
    import peewee  # noqa: F401 - imported before the patch on purpose
    import alyx.db  # noqa: F401
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from alyx.config import load_config
    from alyx.db import Database

    db = Database(load_config(sys.argv[1]))
    db.peewee.connect()
    other_sees_closed = gevent.spawn(db.peewee.is_closed).get()
    db.close()
    print("separate" if other_sees_closed else "shared")
""")


def test_greenlets_do_not_share_a_connection(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "separate"


POOL_SCRIPT = textwrap.dedent("""
    import sys
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from alyx.config import load_config
    from alyx.db import Database, unavailable

    db = Database(load_config(sys.argv[1]))  # ALYX_DATABASE_POOL_SIZE=2
    pw = db.peewee
    seen = []

    def borrow():
        pw.connect()
        seen.append(id(pw.connection()))
        gevent.sleep(0.05)  # both hold theirs at once
        pw.close()

    gevent.joinall([gevent.spawn(borrow), gevent.spawn(borrow)])
    print("distinct" if len(set(seen)) == 2 else "same")
    holders = [gevent.spawn(borrow), gevent.spawn(borrow)]
    gevent.sleep(0.01)
    try:
        pw.connect()  # a third while two are out: refused at once, not waited for
        print("connected")
    except Exception as exc:
        print(unavailable(exc).status)
    gevent.joinall(holders)
    pw.connect()  # and the pool works again once they are back
    pw.execute_sql("SELECT 1")
    pw.close()
    print("reused" if len(pw._connections) == 2 else f"pool holds {len(pw._connections)}")
""")


def test_a_patched_pool_hands_each_greenlet_its_own_connection_and_refuses_past_its_size(tmp_path: Path) -> None:
    """The pool's locks are no-ops between greenlets (alyx/db_pool.py, _GreenletPool._drop_locks): its
    bookkeeping must still give two greenlets two connections, and a full pool must answer 503 at once."""
    import os

    out = subprocess.run([sys.executable, "-c", POOL_SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "ALYX_DATABASE_POOL_SIZE": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["distinct", "503", "reused"]


def test_threads_do_not_share_a_connection(tmp_path: Path) -> None:
    """Unpatched (the Flask dev server's threads, the CLI): each thread has its own state too."""
    import threading

    from alyx.config import load_config
    from alyx.db import Database

    db = Database(load_config(str(tmp_path)))
    try:
        db.peewee.connect()
        seen: list[bool] = []
        thread = threading.Thread(target=lambda: seen.append(db.peewee.is_closed()))
        thread.start()
        thread.join()
        assert seen == [True]
        assert not db.peewee.is_closed()
        db.peewee.close()
    finally:
        db.close()
