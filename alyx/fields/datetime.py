"""The datetime type: an RFC 3339 instant, stored as naive UTC."""
from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import peewee
from marshmallow import fields

from alyx import cel
from alyx.clock import iso, parse_iso
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
