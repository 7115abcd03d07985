"""The bool type: JSON true or false."""
from __future__ import annotations

from typing import Any

import peewee

from alyx import cel
from alyx.fields.base import FieldType
from alyx.fields.strict import StrictBool


class BoolType(FieldType):
    """true/false only (no "yes", no 1); a bool column is a condition on its own in filters and rules."""

    name = "bool"
    widget = "toggle"
    rank = 50
    family = cel.Family.BOOL
    ts_type, python_hint, go_type = "boolean", "bool", "bool"
    column_class = peewee.BooleanField
    marshmallow_class = StrictBool
    base_schema = {"type": "boolean"}

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
        return bool(value)

    def query_value(self, raw: str) -> Any:
        if raw not in ("true", "false"):
            raise ValueError(raw)
        return raw == "true"

    def cel_literal(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise TypeError(value)
