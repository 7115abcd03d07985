"""The float type: a finite double-precision number."""
from __future__ import annotations

from typing import Any

import peewee

from alyx.fields.base import FieldSpec, Models
from alyx.fields.number import NumberType
from alyx.fields.strict import StrictFloat


class FloatType(NumberType):
    """A finite JSON number; stored as DOUBLE."""

    name = "float"
    rank = 40
    marshmallow_class = StrictFloat
    json_type = {"type": "number", "format": "double"}

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        return peewee.DoubleField(null=True)

    def convert(self, value: Any) -> Any:
        return float(value)

    def query_value(self, raw: str) -> Any:
        return float(raw)
