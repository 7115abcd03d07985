"""Strict marshmallow fields: JSON types taken as they are, never guessed (the field types' validators)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from marshmallow import fields

from alyx.clock import parse_iso

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class StrictBool(fields.Boolean):
    """Only JSON true/false: "0", 1 or "yes" are rejected instead of guessed."""

    default_error_messages = {"invalid": "Not a valid boolean (expected true or false)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInt(fields.Integer):
    """A JSON integer within 64 bits; strings, floats and booleans are rejected."""

    default_error_messages = {"invalid": "Not a valid integer.",
                              "range": "Integer out of range (64-bit signed)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.make_error("invalid")
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.make_error("range")
        return int(value)


class StrictFloat(fields.Float):
    """A finite JSON number; strings and booleans are rejected."""

    default_error_messages = {"invalid": "Not a valid number.", "special": "Number must be finite."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.make_error("special")
        return number


class StrictString(fields.String):
    """A JSON string without NUL characters (PostgreSQL cannot store them)."""

    default_error_messages = {"invalid": "Not a valid string.", "nul": "Strings may not contain NUL characters."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if "\x00" in value:
            raise self.make_error("nul")
        return value


class IsoDateTime(fields.Field[dt.datetime]):
    """RFC 3339 date-time; naive values are taken as UTC; stored as naive UTC."""

    default_error_messages = {"invalid": "Not a valid date-time (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dt.datetime:
        parsed = parse_iso(value)
        if parsed is None:
            raise self.make_error("invalid")
        return parsed


class IsoDate(fields.Field[dt.date]):
    """A calendar date, YYYY-MM-DD."""

    default_error_messages = {"invalid": "Not a valid date (expected YYYY-MM-DD)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dt.date:
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise self.make_error("invalid")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None


MAX_JSON_DEPTH = 64


class JsonValue(fields.Raw):
    """Any JSON value up to MAX_JSON_DEPTH levels (responses must serialise it); NUL characters in strings
    are refused for PostgreSQL's sake."""

    default_error_messages = {"nul": "Strings may not contain NUL characters.",
                              "deep": f"JSON values may nest at most {MAX_JSON_DEPTH} levels."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_JSON_DEPTH:
                raise self.make_error("deep")
            if isinstance(item, str) and "\x00" in item:
                raise self.make_error("nul")
            if isinstance(item, dict):
                stack += [(k, depth) for k in item] + [(v, depth + 1) for v in item.values()]
            elif isinstance(item, list):
                stack += [(v, depth + 1) for v in item]
        return value


class RecordId(StrictString):
    """The id of a record: 15 characters of [a-z0-9]."""

    default_error_messages = {"invalid_id": "Not a valid record id (15 characters a-z0-9)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not RECORD_ID.fullmatch(text):
            raise self.make_error("invalid_id")
        return text


RECORD_ID = re.compile(r"[a-z0-9]{15}")
