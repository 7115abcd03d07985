"""The date type: a calendar date (YYYY-MM-DD)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import peewee

from alyx import cel
from alyx.fields.datetime import DatetimeType
from alyx.fields.strict import IsoDate


class DateType(DatetimeType):
    """A date without a time: its own comparison family (a date never equals a datetime)."""

    name = "date"
    widget = "date"
    rank = 70
    family = cel.Family.DATE
    base_schema = {"type": "string", "format": "date"}
    marshmallow_class = IsoDate
    client_doc = "calendar date, YYYY-MM-DD"
    column_class = peewee.DateField

    def convert(self, value: Any) -> Any:
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])

    def cel_literal(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(value)
        return dt.date.fromisoformat(value)

    def from_json(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                return value
        return value
