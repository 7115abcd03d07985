"""SQLite's WAL checkpoints off the request path: a loop per worker copies the WAL back into the database.

By default SQLite makes the commit that takes the write-ahead log past 1,000 pages copy it back into
the database file and sync both (two ``fdatasync``), inside that commit, so inside somebody's
request: on this machine that was about half of what an INSERT cost on average, and the request that
drew it waited milliseconds (docs/benchmarks.md, round 5). Here a loop runs ``PRAGMA
wal_checkpoint(PASSIVE)`` every ``CHECKPOINT_SECONDS`` on its own connection, in a native thread
(``run_blocking``: sqlite3 releases the GIL, so the worker's greenlets go on serving), and a commit
only appends to the WAL. PASSIVE never waits for, nor blocks, a reader or a writer; what it cannot
copy yet (a reader still on an older snapshot) it copies next time.

The connections' own automatic checkpoint stays as a backstop at ``WAL_BACKSTOP_PAGES``, for a
process that runs no loop (CLI commands) or a loop that falls behind, and the WAL file is cut back
to ``WAL_SIZE_LIMIT`` bytes after a burst. Durability is unchanged in kind (``synchronous=NORMAL``:
a commit is on disk once a checkpoint has synced the WAL) and bounded in time: within about
``CHECKPOINT_SECONDS`` instead of after 1,000 pages.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from alyx.background import Loop, run_blocking

CHECKPOINT_SECONDS = 0.25
WAL_BACKSTOP_PAGES = 10_000  # the connections' wal_autocheckpoint (SQLite's default: 1,000)
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # journal_size_limit: the WAL file is truncated back to this


class Checkpoint(NamedTuple):
    """What ``PRAGMA wal_checkpoint`` answered: busy (1 when another checkpoint ran), the WAL's frames,
    and how many of them are now in the database file."""

    busy: int
    wal_frames: int
    copied_frames: int


class Checkpointer:
    """The checkpoint loop of one SQLite database in this process (``start`` after fork, ``stop`` at close)."""

    def __init__(self, path: str, every: float = CHECKPOINT_SECONDS) -> None:
        self.path = path
        self.every = every
        self.last: Checkpoint | None = None  # the latest answer
        self._conn: sqlite3.Connection | None = None
        self.loop = Loop("alyx-sqlite-checkpoint", self._step, backoff=1.0, max_backoff=30.0)

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def checkpoint(self) -> Checkpoint:
        """One PASSIVE checkpoint now, off the event loop."""
        return run_blocking(self._checkpoint)

    def _step(self) -> float:
        if not Path(self.path).exists():  # the project was removed under a running app: nothing to keep
            self.loop.stop()
            return 0.0
        self.last = self.checkpoint()
        return self.every

    def _checkpoint(self) -> Checkpoint:
        if self._conn is None:
            # mode=rw: never create a database file where the app's has gone.
            self._conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=0,
                                         isolation_level=None, check_same_thread=False)
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return Checkpoint(int(busy), int(frames), int(copied))
