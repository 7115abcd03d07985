"""Timestamped webhook signatures seen once: a second delivery of the same (t, signature) is a replay.

The rows live in ``_alyx_webhook_replays`` (one primary key per signature), so every worker and
host sharing the database refuses the second copy; a row is useless once its timestamp has left
the tolerance window (the signature check refuses it then anyway) and is purged after that.
"""
from __future__ import annotations

import datetime as dt

from alyx.clock import utcnow
from alyx.db import Database
from alyx.models import WebhookReplay


class ReplayGuard:
    """``first_time(function, key, expires)``: True once per key, False for every later delivery."""

    def __init__(self, db: Database, model: type[WebhookReplay]) -> None:
        self.db = db
        self.model = model

    def first_time(self, function: str, key: str, expires: float) -> bool:
        expires_at = dt.datetime.fromtimestamp(expires, dt.timezone.utc).replace(tzinfo=None)
        with self.db.connection(), self.db.write():
            self.model.delete().where(self.model.expires_at < utcnow()).execute()
            inserted = (self.model.insert(key=f"{function}:{key}", expires_at=expires_at)
                        .on_conflict_ignore().as_rowcount().execute())
        return int(inserted) == 1
