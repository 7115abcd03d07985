"""The one clock and the one timestamp format of Alyx.

The database stores naive UTC datetimes; every JSON output (records, executions, jobs, schedules,
hook payloads) prints them as RFC 3339 with milliseconds and ``Z``.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any


def utcnow() -> dt.datetime:
    """Now, as a naive UTC datetime (what the database columns hold)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso(value: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-01T20:53:37.123Z`` (aware values are converted)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    # Same text as strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", ~5x faster, and years < 1000 keep 4 digits.
    return value.isoformat(timespec="milliseconds") + "Z"


def iso_or_value(value: Any) -> Any:
    """``iso(value)`` for a datetime; anything else (None, a stored string) unchanged."""
    return iso(value) if isinstance(value, dt.datetime) else value


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}:\d{2})?")


def parse_iso(value: Any) -> dt.datetime | None:
    """RFC 3339 (or 'YYYY-MM-DD HH:MM:SS') → naive UTC datetime, or None when it is not one."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None
    return parsed
