"""The one clock and the one timestamp format of Alyx.

The database stores naive UTC datetimes; every JSON output (records, executions, jobs, schedules,
hook payloads) prints them as RFC 3339 with milliseconds and ``Z``.
"""
from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable
from typing import Any

import orjson


def naive_utc_now() -> dt.datetime:
    """Now, as a naive UTC datetime, on any Python (``utcnow`` where ``datetime.utcnow`` is deprecated)."""
    now = dt.datetime.now(dt.timezone.utc)
    return dt.datetime(now.year, now.month, now.day, now.hour, now.minute, now.second, now.microsecond)


# utcnow(): now, as a naive UTC datetime (what the database columns hold). ``datetime.utcnow`` gives it
# in 340 ns; ``now(timezone.utc).replace(tzinfo=None)`` took 2.4 µs (``replace`` parses nine keywords),
# twice per record write. Python 3.12 deprecates ``utcnow``: there the aware now is copied (0.9 µs).
if sys.version_info < (3, 12):
    utcnow: Callable[[], dt.datetime] = dt.datetime.utcnow
else:  # pragma: no cover - this machine runs 3.11
    utcnow = naive_utc_now


def iso(value: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-01T20:53:37.123Z`` (aware values are converted)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if type(value) is not dt.datetime:  # orjson formats only the datetime class itself
        return value.isoformat(timespec="milliseconds") + "Z"
    # orjson writes '"YYYY-MM-DDTHH:MM:SS[.ffffff]"' (the fraction only when there are microseconds, years
    # < 1000 with 4 digits): the same text as isoformat(timespec="milliseconds"), in a third of its time
    # (that call parses its keyword and builds the text through PyUnicode_FromFormat), two per record.
    # Sliced as bytes here, not through iso_of_text: a str and a call more cost twice the time.
    text = orjson.dumps(value)
    return text[1:24].decode() + "Z" if len(text) == 28 else text[1:20].decode() + ".000Z"


def stored_text(value: dt.datetime) -> str:
    """``value.isoformat(" ")``, the text sqlite3's default adapter stores for a datetime, made by ``orjson``
    for a naive one (380 ns against 940: three per record write); aware values and subclasses go the long way."""
    if type(value) is not dt.datetime or value.tzinfo is not None:
        return value.isoformat(" ")
    return orjson.dumps(value)[1:-1].decode().replace("T", " ", 1)


def iso_of_text(text: str) -> str:
    """A naive datetime's ISO text as Python and SQLite write it ('YYYY-MM-DD HH:MM:SS[.ffffff]', ``T`` or
    a space between date and time, the fraction only when there are microseconds) → ``iso``'s form."""
    return f"{text[:10]}T{text[11:23]}Z" if len(text) == 26 else f"{text[:10]}T{text[11:19]}.000Z"


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
