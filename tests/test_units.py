"""alyx.units: durations (seconds or 500ms/1s/2m/1h30m) and sizes (megabytes or 128MB/128m/1G)."""
from __future__ import annotations

import pytest

from alyx.units import parse_duration, parse_duration_text, parse_size_mb


@pytest.mark.parametrize("value, seconds", [
    (10, 10.0), (0.5, 0.5), ("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0), ("1d", 86400.0),
    (" 2M ", 120.0), ("1.5s", 1.5), ("3", 3.0), ("0.25", 0.25),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "5x", "m5", "1h junk", "-5m", True, None, [1], {"s": 1}])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_duration_text_needs_units() -> None:
    assert parse_duration_text("30s") == 30.0
    with pytest.raises(ValueError):
        parse_duration_text("30")


@pytest.mark.parametrize("value, megabytes", [
    (128, 128), (256.0, 256), ("128MB", 128), ("128m", 128), ("128M", 128), ("256MiB", 256), ("1G", 1024),
    ("2gb", 2048), ("64", 64), (" 512 MB ", 512),
])
def test_sizes(value: object, megabytes: int) -> None:
    assert parse_size_mb(value) == megabytes


@pytest.mark.parametrize("value", ["lots", "1.5G", "128KB", "MB", True, None, 1.5, [128]])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size_mb(value)
