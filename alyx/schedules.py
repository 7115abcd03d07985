"""Schedules: parse manifest `schedules:` entries and compute run times — pure, no database, no Flask.

Three kinds: ``cron`` (croniter, evaluated in an IANA timezone with zoneinfo), ``interval``
(``30s``, ``5m``, ``1h``, ``1d``, or combined ``1h30m``: alyx/units.py's durations) and ``one_time``
(an RFC 3339 instant).
All times handed out are aware UTC datetimes.

Daylight saving: a cron time that does not exist on the spring-forward day (02:30 in New York) runs
at the first valid instant after it (03:00); a cron job with fixed hours whose wall time happens
twice on the fall-back day runs once, at the first occurrence (as Vixie cron does); a job on every
hour (hour field ``*``) runs every elapsed hour, both 01:00s included.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from alyx.units import parse_duration_text
from alyx.yamlfile import Reader

UTC = dt.timezone.utc
KINDS = ("cron", "interval", "one_time")
CATCH_UP = ("once", "all", "none")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_CATCH_UP_RUNS = 100  # catch_up: all never queues more than this many missed runs at once
SCHEDULE_KEYS = {"name", "type", "expression", "timezone", "config", "catch_up", "enabled"}


class ScheduleError(ValueError):
    """A schedule entry that cannot be used, with a message naming the function and schedule."""


def parse_interval(text: str) -> dt.timedelta:
    """``30s`` / ``5m`` / ``1h`` / ``1d`` / ``1h30m`` → a timedelta of at least a second (ValueError otherwise)."""
    try:
        seconds = parse_duration_text(text)
    except ValueError:
        raise ValueError(f"interval {text!r} is not like 30s, 5m, 1h, 1d or 1h30m") from None
    if seconds < 1:
        raise ValueError(f"interval {text!r} must be at least a second")
    return dt.timedelta(seconds=seconds)


def parse_instant(text: str, tz: dt.tzinfo) -> dt.datetime:
    """An RFC 3339 timestamp → aware UTC; a value without an offset is read in ``tz``."""
    value = str(text).strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp (like 2026-12-31T23:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule of one function: when it runs and the input it passes (req.input)."""

    function: str
    name: str
    type: str
    expression: str
    timezone: str = "UTC"
    input: Any = None
    catch_up: str | None = None  # None: the server default (schedules.catch_up)
    enabled: bool = True
    _tz: dt.tzinfo = field(default=UTC, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Stable identity across restarts: ``<function>/<name>``."""
        return f"{self.function}/{self.name}"

    @property
    def fingerprint(self) -> str:
        """Changes when the timing changes (then the persisted next run is recomputed)."""
        text = f"{self.type}\0{self.expression}\0{self.timezone}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first run time strictly after ``after`` (aware), or None when there is none left."""
        after = after.astimezone(UTC)
        if self.type == "interval":
            return after + parse_interval(self.expression)
        if self.type == "one_time":
            at = parse_instant(self.expression, self._tz)
            return at if at > after else None
        return next(self._cron_times(after), None)

    def times_between(self, first: dt.datetime, until: dt.datetime, limit: int = MAX_CATCH_UP_RUNS
                      ) -> list[dt.datetime]:
        """Run times from ``first`` (included) up to ``until`` (included), at most ``limit``."""
        times: list[dt.datetime] = []
        current: dt.datetime | None = first
        while current is not None and current <= until and len(times) < limit:
            times.append(current)
            current = self.next_after(current)
        return times

    def _cron_times(self, after: dt.datetime) -> Iterator[dt.datetime]:
        fixed_hours = self.expression.split()[1] != "*"
        it = croniter(self.expression, after.astimezone(self._tz))
        for _ in range(10_000):
            local = it.get_next(dt.datetime)
            instant = local.astimezone(UTC)
            if fixed_hours and _is_repeated_wall_time(local):
                continue
            yield instant
        return


def _is_repeated_wall_time(local: dt.datetime) -> bool:
    """True for the second occurrence of a wall time that happens twice (the fall-back hour)."""
    first = local.replace(fold=0).astimezone(UTC)
    second = local.replace(fold=1).astimezone(UTC)
    return first != second and local.astimezone(UTC) == max(first, second)


def plan_runs(spec: ScheduleSpec, next_run: dt.datetime | None, now: dt.datetime, catch_up: str,
              grace: dt.timedelta) -> tuple[list[dt.datetime], dt.datetime | None]:
    """What to run now for a schedule whose persisted next run is ``next_run``: (run times, new next run).

    A due time less than ``grace`` old is on time and runs. Older ones were missed (the server was
    down): ``once`` runs one of them, ``all`` runs each (up to MAX_CATCH_UP_RUNS), ``none`` skips them.
    """
    if next_run is None or next_run > now:
        return [], next_run
    following = spec.next_after(now)
    if catch_up == "all":
        return spec.times_between(next_run, now), following
    if now - next_run <= grace or catch_up == "once":
        return [next_run], following
    return [], following


def parse_schedules(function: str, raw: Any, environ_tz: str | None = None, *, reader: Reader | None = None,
                    parent: Any = None) -> list[ScheduleSpec]:
    """A manifest's ``schedules:`` list → ScheduleSpecs; the error names the entry (and line) that is wrong.

    ``reader`` is the manifest's (its errors then carry file:line); alone, errors are ScheduleErrors.
    """
    reader = reader or Reader(f"Function {function!r}: manifest.yaml", ScheduleError)
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.fail(parent, "schedules", "must be a list", key="schedules")
    specs: list[ScheduleSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"schedules[{index}]"
        if not isinstance(entry, dict):
            reader.fail(parent, where, "must be a mapping", key="schedules")
        reader.mapping(entry, where, SCHEDULE_KEYS)
        name = str(entry.get("name") or f"schedule{index}")
        if not NAME_RE.match(name):
            reader.fail(entry, where, f"name {name!r} must be letters, digits, '_', '-' or '.'", key="name")
        if name in seen:
            reader.fail(entry, where, f"two schedules are named {name!r}", key="name")
        seen.add(name)
        kind = entry.get("type", "cron")
        if kind not in KINDS:
            reader.fail(entry, where, f"type must be one of {', '.join(KINDS)}, got {kind!r}", key="type")
        expression = entry.get("expression")
        if expression is None or isinstance(expression, (bool, dict, list)):
            reader.fail(entry, where, "expression is required", key="expression")
        expression = str(expression).strip()
        tz_name = str(entry.get("timezone") or environ_tz or "UTC")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            reader.fail(entry, where, f"timezone {tz_name!r} is not an IANA timezone (like Europe/Paris)",
                        key="timezone")
        try:
            if kind == "cron":
                if not croniter.is_valid(expression) or len(expression.split()) != 5:
                    raise ValueError(f"{expression!r} is not a 5-field cron expression (like '0 3 * * *')")
            elif kind == "interval":
                parse_interval(expression)
            else:
                parse_instant(expression, tz)
        except ValueError as exc:
            reader.fail(entry, where, str(exc), key="expression")
        config = entry.get("config") or {}
        if not isinstance(config, dict) or set(config) - {"input"}:
            reader.fail(entry, where, "config may only hold 'input'", key="config")
        catch_up = entry.get("catch_up")
        if catch_up is not None and catch_up not in CATCH_UP:
            reader.fail(entry, where, f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}",
                        key="catch_up")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            reader.fail(entry, where, "enabled must be true or false", key="enabled")
        specs.append(ScheduleSpec(function, name, kind, expression, tz_name, config.get("input"), catch_up,
                                  enabled, tz))
    return specs
