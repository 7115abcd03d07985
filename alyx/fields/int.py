"""The int type: a 64-bit signed integer."""
from __future__ import annotations

from typing import Any

import peewee

from alyx.fields.number import NumberType
from alyx.fields.strict import StrictInt


class IntType(NumberType):
    """A JSON integer within 64 bits (a float with no fraction is taken); stored as BIGINT."""

    name = "int"
    widget = "integer"
    rank = 30
    column_class = peewee.BigIntegerField
    marshmallow_class = StrictInt
    python_hint, go_type = "int", "int64"
    base_schema = {"type": "integer", "format": "int64"}
    python_type = int

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        return int(float(value)) if isinstance(value, (str, float)) else int(value)
