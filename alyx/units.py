"""Durations and sizes as people write them in config files: ``500ms``, ``1h30m``, ``128MB``, ``1G``."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_RE = re.compile(r"(\d+)([mg])?(?:i?b)?")
DURATION_HINT = "seconds, or like 500ms, 1s, 2m, 1h30m"
SIZE_HINT = "megabytes, or like 128MB, 256m, 1G"
BYTES_RE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?")
BYTES_HINT = "bytes, or like 500KB, 5MB, 1G"


def parse_duration_text(text: str) -> float:
    """``30s`` / ``500ms`` / ``5m`` / ``1h`` / ``1d`` / ``1h30m`` → seconds (ValueError otherwise; units required)."""
    compact = str(text).strip().lower().replace(" ", "")
    if not compact or DURATION_PART.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 5m, 1h, 1d or 1h30m")
    return sum(float(n) * UNIT_SECONDS[unit] for n, unit in DURATION_PART.findall(compact))


def parse_duration(value: Any) -> float:
    """A number of seconds, or a duration text (``1s``, ``500ms``, ``2m``) → seconds (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({DURATION_HINT})")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return parse_duration_text(value)
    raise ValueError(f"{value!r} is not a duration ({DURATION_HINT})")


def parse_size_mb(value: Any) -> int:
    """A whole number of megabytes, or ``128MB`` / ``128m`` / ``256MiB`` / ``1G`` → megabytes (ValueError otherwise)."""
    return parse_whole(value, SIZE_HINT, size_mb_text, non_negative=False)


def parse_size_bytes(value: Any) -> int:
    """A whole number of bytes, or ``500KB`` / ``5MB`` / ``5m`` / ``1GiB`` → bytes (ValueError otherwise)."""
    return parse_whole(value, BYTES_HINT, size_bytes_text, non_negative=True)


def size_mb_text(text: str) -> int | None:
    """``128MB`` / ``128m`` / ``256MiB`` / ``1G`` → megabytes, None if the text is no such size."""
    m = SIZE_RE.fullmatch(text.strip().lower().replace(" ", ""))
    return int(m.group(1)) * (1024 if m.group(2) == "g" else 1) if m else None


def size_bytes_text(text: str) -> int | None:
    """``500KB`` / ``5MB`` / ``5m`` / ``1GiB`` → bytes, None if the text is no such size."""
    m = BYTES_RE.fullmatch(text.strip().lower())
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2)] if m else None


def parse_whole(value: Any, hint: str, text: Callable[[str], int | None], *, non_negative: bool) -> int:
    """A whole number (an integral float counts, a bool does not) or a text `text` reads → int (else ValueError)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size ({hint})")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and (value >= 0 or not non_negative):
        return value
    if isinstance(value, str):
        number = text(value)
        if number is not None:
            return number
    raise ValueError(f"{value!r} is not a size ({hint})")
