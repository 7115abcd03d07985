"""The float type: a finite double-precision number."""
from __future__ import annotations

import peewee

from alyx.fields.number import NumberType
from alyx.fields.strict import StrictFloat


class FloatType(NumberType):
    """A finite JSON number; stored as DOUBLE."""

    name = "float"
    widget = "number"
    rank = 40
    python_type = float
    base_schema = {"type": "number", "format": "double"}
    column_class = peewee.DoubleField
    marshmallow_class = StrictFloat
