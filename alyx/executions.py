"""The execution log: one row per function run (trigger, input, output, status, timings, logs, error)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import peewee

from alyx.clock import iso_or_value, utcnow
from alyx.db import Database
from alyx.errors import bad_request, not_found
from alyx.models import new_id
from alyx.query import filtered_listing
from alyx.validation import RECORD_ID

STATUSES = ("success", "error", "timeout", "crashed", "memory_limit", "load_error", "denied")
TRIGGERS = ("http", "database", "webhook", "schedule")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
BODY_CAP = 16 * 1024
LOG_CAP = 64 * 1024
KEEP_PER_FUNCTION = 1000  # newest runs kept per function; older ones are pruned as new ones arrive
PRUNE_EVERY = 50  # inserts per function between prunes


def capped_text(data: bytes | str | None, cap: int = BODY_CAP) -> str | None:
    """Text of a body for the log, cut at `cap` bytes with a truncation marker."""
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else data
    text = raw[:cap].decode("utf-8", "replace")
    if len(raw) > cap:
        text += f"\n[... {len(raw) - cap} more bytes truncated]"
    return text


class Executions:
    """Writes and reads the execution log through the one system model."""

    def __init__(self, db: Database, model: type[peewee.Model], keep: int = KEEP_PER_FUNCTION) -> None:
        self.db = db
        self.model: Any = model  # the Execution model of alyx/models.py (its columns are dynamic)
        self.keep = keep
        self._inserts: dict[str, int] = {}

    def record(self, *, function: str, version: str, trigger: str, status: str, input: Any, output: Any,
               error: Mapping[str, Any] | None, stdout: str, stderr: str, timings: Mapping[str, float],
               duration_ms: float, tier: str, sandbox: str | None, started_at: dt.datetime | None = None) -> str:
        row_id = new_id()
        row = {
            "id": row_id, "function_id": function, "version": version[:16], "trigger_type": trigger,
            "status": status, "input": input, "output": output, "error": dict(error) if error else None,
            "stdout": capped_text(stdout, LOG_CAP) or "", "stderr": capped_text(stderr, LOG_CAP) or "",
            "timings": dict(timings), "duration_ms": duration_ms, "tier": tier, "sandbox": sandbox,
            "started_at": started_at or utcnow(),
        }
        with self.db.connection(), self.db.write():
            self.db.insert(self.model, row)  # a prepared statement: peewee's builder cost more than the write
        count = self._inserts[function] = self._inserts.get(function, 0) + 1
        if count % PRUNE_EVERY == 1:
            self.prune(function)
        return row_id

    def prune(self, function: str) -> int:
        """Delete a function's runs beyond the newest `keep`; returns how many went."""
        m = self.model
        with self.db.connection():
            cutoff = (m.select(m.started_at).where(m.function_id == function)
                      .order_by(m.started_at.desc()).offset(self.keep).limit(1).scalar())
            if cutoff is None:
                return 0
            with self.db.write():
                return int(m.delete().where((m.function_id == function) & (m.started_at <= cutoff)).execute())

    def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Newest first; filters: function_id, status, trigger_type; limit (default 50, max 500); ``before``:
        the ``next`` of the page before, for the runs older than it (keyset paging: new runs shift nothing).

        Returns ``{items, next}``; ``next`` is None on the last page."""
        m = self.model
        before = query.get("before")
        select, limit = filtered_listing(m, {k: v for k, v in query.items() if k != "before"},
                                         ("function_id", "status", "trigger_type"), DEFAULT_LIMIT, MAX_LIMIT)
        with self.db.connection():
            if before:
                cursor = m.select(m.started_at, m.id).where(m.id == before).first() if RECORD_ID.fullmatch(before) \
                    else None
                if cursor is None:
                    raise bad_request(f"before: no execution {before[:64]!r} (it may have been pruned).")
                select = select.where((m.started_at < cursor.started_at)
                                      | ((m.started_at == cursor.started_at) & (m.id < cursor.id)))
            found: Any = select.order_by(m.started_at.desc(), m.id.desc()).limit(limit + 1).dicts()
            rows: list[dict[str, Any]] = list(found)
        more = len(rows) > limit
        items = [self._shape(r) for r in rows[:limit]]
        return {"items": items, "next": items[-1]["id"] if more else None}

    def get(self, execution_id: str) -> dict[str, Any]:
        with self.db.connection():
            row = self.model.select().where(self.model.id == execution_id).dicts().first()
        if row is None:
            raise not_found(f"No execution {execution_id!r}.")
        return self._shape(row)

    @staticmethod
    def _shape(row: dict[str, Any]) -> dict[str, Any]:
        row["started_at"] = iso_or_value(row.pop("started_at"))
        row["logs"] = {"stdout": row.pop("stdout"), "stderr": row.pop("stderr")}
        return row
