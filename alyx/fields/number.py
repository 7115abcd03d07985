"""The base of the number types (int, float): a value range, JSON numbers, numbers in filters."""
from __future__ import annotations

import math
from typing import Any, ClassVar

import peewee
from marshmallow import fields, validate

from alyx import cel
from alyx.fields.base import FieldSpec, FieldType
from alyx.fields.strict import INT64_MAX, INT64_MIN


class NumberType(FieldType):
    """min/max bound the value; CEL literals are bound as SQL values as they are."""

    family = cel.Family.NUMBER
    ts_type, python_hint, go_type = "number", "float", "float64"
    options = frozenset({"min", "max"})
    length_bounds = False
    python_type: ClassVar[type[int] | type[float]]  # parses ?field=value

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        bounds = [] if spec.min is None and spec.max is None else [validate.Range(min=spec.min, max=spec.max)]
        return self.marshmallow_class(validate=bounds, required=required, allow_none=allow_none)

    def convert(self, value: Any) -> Any:
        return self.python_type(value)

    def query_value(self, raw: str) -> Any:
        """``?field=value`` as a number the column can hold (ValueError beyond 64 bits or not finite)."""
        value = self.python_type(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(raw)
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(raw)
        return value

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        out = dict(self.base_schema)
        if spec.min is not None:
            out["minimum"] = spec.min
        if spec.max is not None:
            out["maximum"] = spec.max
        return out

    def cel_literal(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(value)
        # Bound as-is (no int() by the column's converter: `views == 3.5` must not match 3); ints beyond
        # 64 bits become floats beyond every int64 (SQLite cannot bind them, and compares ints and floats
        # exactly): float(-2**63 - 1) would round to -2**63 itself, hence the next float down.
        if isinstance(value, int) and value >= 2**63:
            value = float(value)
        elif isinstance(value, int) and value < -(2**63):
            value = math.nextafter(float(-(2**63)), -math.inf)
        return peewee.Value(value, converter=False)
