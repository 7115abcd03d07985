"""The date type: a calendar date (YYYY-MM-DD)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import peewee
from marshmallow import fields

from alyx import cel
from alyx.fields.base import FieldSpec, Models
from alyx.fields.datetime import DatetimeType
from alyx.fields.strict import IsoDate


class DateType(DatetimeType):
    """A date without a time: its own comparison family (a date never equals a datetime)."""

    name = "date"
    rank = 70
    family = cel.Family.DATE

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        return peewee.DateField(null=True)

    def convert(self, value: Any) -> Any:
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        return IsoDate(required=required, allow_none=allow_none)

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"type": "string", "format": "date"}

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
