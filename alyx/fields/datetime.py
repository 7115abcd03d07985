"""The datetime type: an RFC 3339 instant, stored as naive UTC."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar

import peewee
from marshmallow import fields

from alyx import cel
from alyx.clock import iso, iso_of_text, parse_iso
from alyx.fields.base import FieldType
from alyx.fields.strict import IsoDateTime


class DateTimeField(peewee.DateTimeField):
    """peewee's DateTimeField, reading the text SQLite stores ('YYYY-MM-DD HH:MM:SS[.ffffff]') with
    ``datetime.fromisoformat`` before peewee's strptime formats: a list page reads two per row."""

    def python_value(self, value: object) -> object:
        if isinstance(value, str) and len(value) >= 19 and value[10] == " ":
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is None:
                    return parsed
        return super().python_value(value)  # type: ignore[no-untyped-call]


class DatetimeType(FieldType):
    """RFC 3339 in (naive values are UTC), RFC 3339 UTC with milliseconds out; compared as instants."""

    name = "datetime"
    widget = "datetime"
    rank = 60
    family = cel.Family.TIMESTAMP
    ts_type, python_hint, go_type = "string", "str", "string"
    client_doc = "RFC 3339 timestamp in UTC with milliseconds, e.g. 2026-01-02T03:04:05.000Z"
    encodes = True
    column_class: ClassVar[type[peewee.Field]] = DateTimeField
    marshmallow_class: ClassVar[type[fields.Field[Any]]] = IsoDateTime
    base_schema = {"type": "string", "format": "date-time"}

    def convert(self, value: Any) -> Any:
        return value if isinstance(value, dt.datetime) else parse_iso(str(value))

    def cel_literal(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(value)
        parsed = parse_iso(value)
        if parsed is None:
            raise ValueError(value)
        return parsed

    def to_json(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return iso(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    def from_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return parse_iso(value) or value
        return value

    def stored_to_json(self, column: peewee.Field) -> Callable[[Any], Any]:
        """SQLite's text of a naive UTC datetime ('YYYY-MM-DD HH:MM:SS[.ffffff]', as written) is sliced into
        its JSON form, once ``fromisoformat`` has checked it is a valid one; anything else (PostgreSQL's
        datetimes, other text) goes the long way. A third of the time of parsing and formatting."""
        slow = super().stored_to_json(column)

        def read(value: Any) -> Any:
            if type(value) is str and value[4:20:3] == _STORED_SHAPES.get(len(value)):
                try:
                    naive = dt.datetime.fromisoformat(value).tzinfo is None
                except ValueError:
                    naive = False
                if naive:
                    return iso_of_text(value)
            return slow(value)

        return read


# The separators at positions 4, 7, 10, 13, 16 (and 19) of SQLite's datetime text, by its length.
_STORED_SHAPES = {26: "-- ::.", 19: "-- ::"}
