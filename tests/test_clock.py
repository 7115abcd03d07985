"""alyx/clock.py: one clock, one timestamp format."""
from __future__ import annotations

import datetime as dt

from alyx.clock import iso, iso_of_text, iso_or_value, naive_utc_now, stored_text, utcnow


def test_utcnow_is_naive_utc() -> None:
    for now in (utcnow(), naive_utc_now()):  # naive_utc_now: utcnow on Python 3.12 and later
        assert type(now) is dt.datetime and now.tzinfo is None
        aware = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        assert abs((aware - now).total_seconds()) < 5


def test_iso_prints_milliseconds_and_z() -> None:
    assert iso(dt.datetime(2026, 12, 1, 20, 53, 37, 123456)) == "2026-12-01T20:53:37.123Z"
    assert iso(dt.datetime(999, 1, 2)) == "0999-01-02T00:00:00.000Z"


def test_iso_is_isoformat_to_the_millisecond() -> None:
    class Stamp(dt.datetime):
        pass

    values = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(999, 1, 1, 0, 0, 0, 1),
              Stamp(2026, 3, 4, 5, 6, 7, 8910)]
    values += [dt.datetime(2026, 2, 28, 23, 59, 59) + dt.timedelta(microseconds=us) for us in range(0, 1_000_000, 997)]
    for value in values:
        assert iso(value) == value.isoformat(timespec="milliseconds") + "Z", value
        assert iso_of_text(str(value)) == iso_of_text(value.isoformat()) == iso(value), value  # stored text
        assert stored_text(value) == value.isoformat(" ") == str(value), value
    aware = dt.datetime(2026, 1, 1, 2, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=7)))
    assert stored_text(aware) == aware.isoformat(" ")


def test_iso_converts_aware_values_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert iso(dt.datetime(2026, 1, 1, 2, 0, tzinfo=plus_two)) == "2026-01-01T00:00:00.000Z"


def test_iso_or_value_leaves_other_values() -> None:
    assert iso_or_value(None) is None
    assert iso_or_value("2026-01-01") == "2026-01-01"
    assert iso_or_value(dt.datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"
