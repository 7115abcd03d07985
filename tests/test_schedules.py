"""alyx.schedules: parsing, next-run computation (DST transitions included) and catch-up planning."""
from __future__ import annotations

import datetime as dt

import pytest

from alyx.schedules import ScheduleError, parse_interval, parse_schedules, plan_runs

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def one(entry: dict) -> object:
    return parse_schedules("fn", [entry])[0]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400),
                                           ("1h30m", 5400), (" 2M ", 120)])
def test_intervals(text: str, seconds: int) -> None:
    assert parse_interval(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0s", "5", "5x", "m5", "1h junk", "-5m"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)


def test_cron_in_a_timezone() -> None:
    spec = one({"name": "nightly", "type": "cron", "expression": "0 3 * * *", "timezone": "Europe/Paris"})
    assert spec.key == "fn/nightly"
    # winter: Paris is UTC+1
    assert spec.next_after(at("2026-01-10T12:00:00+00:00")) == at("2026-01-11T02:00:00+00:00")
    # summer: UTC+2
    assert spec.next_after(at("2026-07-10T12:00:00+00:00")) == at("2026-07-11T01:00:00+00:00")


def test_cron_spring_forward_missing_time_runs_once_after_the_gap() -> None:
    # 2026-03-08: New York clocks jump from 02:00 to 03:00; 02:30 does not exist that day
    spec = one({"name": "n", "type": "cron", "expression": "30 2 * * *", "timezone": "America/New_York"})
    times = spec.times_between(spec.next_after(at("2026-03-06T12:00:00+00:00")), at("2026-03-10T12:00:00+00:00"))
    assert times == [at("2026-03-07T02:30:00-05:00"), at("2026-03-08T03:00:00-04:00"),
                     at("2026-03-09T02:30:00-04:00"), at("2026-03-10T02:30:00-04:00")]


def test_cron_fall_back_fixed_time_runs_once_on_the_repeated_hour() -> None:
    # 2026-11-01: New York clocks go from 02:00 EDT back to 01:00 EST; 01:30 happens twice
    spec = one({"name": "n", "type": "cron", "expression": "30 1 * * *", "timezone": "America/New_York"})
    times = spec.times_between(spec.next_after(at("2026-10-31T12:00:00+00:00")), at("2026-11-03T12:00:00+00:00"))
    assert times == [at("2026-11-01T01:30:00-04:00"), at("2026-11-02T01:30:00-05:00"),
                     at("2026-11-03T01:30:00-05:00")]


def test_cron_hourly_runs_every_elapsed_hour_across_fall_back() -> None:
    spec = one({"name": "n", "type": "cron", "expression": "0 * * * *", "timezone": "America/New_York"})
    times = spec.times_between(at("2026-11-01T04:00:00+00:00"), at("2026-11-01T08:00:00+00:00"))
    assert times == [at(f"2026-11-01T0{h}:00:00+00:00") for h in range(4, 9)]  # 5 real hours, both 01:00s


def test_cron_in_utc_has_no_surprises() -> None:
    spec = one({"name": "n", "expression": "*/15 * * * *"})
    assert spec.type == "cron" and spec.timezone == "UTC"
    assert spec.next_after(at("2026-05-01T10:07:00+00:00")) == at("2026-05-01T10:15:00+00:00")


def test_interval_and_one_time() -> None:
    every = one({"name": "tick", "type": "interval", "expression": "5m"})
    assert every.next_after(at("2026-05-01T10:00:00+00:00")) == at("2026-05-01T10:05:00+00:00")
    once = one({"name": "launch", "type": "one_time", "expression": "2026-12-31T23:00:00Z"})
    assert once.next_after(at("2026-05-01T00:00:00+00:00")) == at("2026-12-31T23:00:00+00:00")
    assert once.next_after(at("2026-12-31T23:00:00+00:00")) is None
    local = one({"name": "l", "type": "one_time", "expression": "2026-07-01T09:00:00", "timezone": "Asia/Tokyo"})
    assert local.next_after(at("2026-01-01T00:00:00+00:00")) == at("2026-07-01T00:00:00+00:00")


def test_config_input_and_catch_up() -> None:
    spec = one({"name": "r", "type": "interval", "expression": "1h", "config": {"input": {"report": "daily"}},
                "catch_up": "all"})
    assert spec.input == {"report": "daily"} and spec.catch_up == "all"


@pytest.mark.parametrize("entry, message", [
    ({"name": "a", "type": "weekly", "expression": "x"}, "type must be"),
    ({"name": "a", "type": "cron", "expression": "61 * * * *"}, "cron expression"),
    ({"name": "a", "type": "cron", "expression": "* * * *"}, "cron expression"),
    ({"name": "a", "type": "cron"}, "expression is required"),
    ({"name": "a", "type": "interval", "expression": "soon"}, "interval"),
    ({"name": "a", "type": "one_time", "expression": "tomorrow"}, "RFC 3339"),
    ({"name": "a", "expression": "* * * * *", "timezone": "Mars/Olympus"}, "IANA"),
    ({"name": "a", "expression": "* * * * *", "catch_up": "sometimes"}, "catch_up"),
    ({"name": "a", "expression": "* * * * *", "config": {"other": 1}}, "config"),
    ({"name": "a", "expression": "* * * * *", "every": 1}, "unknown key"),
    ({"name": "bad name!", "expression": "* * * * *"}, "name"),
])
def test_bad_entries_name_the_problem(entry: dict, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedules("fn", [entry])
    assert message in str(info.value) and "'fn'" in str(info.value) and "schedules[0]" in str(info.value)


def test_duplicate_names_and_shape() -> None:
    with pytest.raises(ScheduleError, match="two schedules"):
        parse_schedules("fn", [{"name": "a", "expression": "* * * * *"}, {"name": "a", "expression": "0 * * * *"}])
    with pytest.raises(ScheduleError, match="must be a list"):
        parse_schedules("fn", {"name": "a"})
    assert parse_schedules("fn", None) == []


def test_fingerprint_follows_timing_only() -> None:
    a = one({"name": "a", "expression": "0 3 * * *", "config": {"input": 1}})
    b = one({"name": "a", "expression": "0 3 * * *", "config": {"input": 2}})
    c = one({"name": "a", "expression": "0 4 * * *"})
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_plan_runs_on_time_and_catch_up_policies() -> None:
    spec = one({"name": "h", "type": "interval", "expression": "1h"})
    grace = dt.timedelta(seconds=60)
    due = at("2026-05-01T10:00:00+00:00")
    # not yet due
    assert plan_runs(spec, due, due - dt.timedelta(seconds=1), "once", grace) == ([], due)
    # on time: runs regardless of the catch-up policy
    now = due + dt.timedelta(seconds=2)
    for policy in ("once", "all", "none"):
        runs, following = plan_runs(spec, due, now, policy, grace)
        assert runs == [due] and following == now + dt.timedelta(hours=1)
    # the server was down for 5 hours and 30 minutes
    now = due + dt.timedelta(hours=5, minutes=30)
    assert plan_runs(spec, due, now, "once", grace)[0] == [due]
    assert plan_runs(spec, due, now, "none", grace)[0] == []
    assert plan_runs(spec, due, now, "all", grace)[0] == [due + dt.timedelta(hours=h) for h in range(6)]
    assert plan_runs(spec, None, now, "all", grace) == ([], None)


def test_one_time_runs_once_then_never() -> None:
    spec = one({"name": "o", "type": "one_time", "expression": "2026-05-01T10:00:00Z"})
    due = at("2026-05-01T10:00:00+00:00")
    runs, following = plan_runs(spec, due, due + dt.timedelta(days=3), "once", dt.timedelta(seconds=60))
    assert runs == [due] and following is None
