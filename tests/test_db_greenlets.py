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
