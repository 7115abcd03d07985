"""The bool type: JSON true or false."""
from __future__ import annotations

from typing import Any

import peewee
from marshmallow import fields

from alyx import cel
from alyx.fields.base import FieldSpec, FieldType, Models
from alyx.fields.strict import StrictBool


class BoolType(FieldType):
    """true/false only (no "yes", no 1); a bool column is a condition on its own in filters and rules."""

    name = "bool"
    rank = 50
    family = cel.Family.BOOL

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        return peewee.BooleanField(null=True)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
        return bool(value)

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        return StrictBool(required=required, allow_none=allow_none)

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"type": "boolean"}

    def query_value(self, raw: str) -> Any:
        if raw not in ("true", "false"):
            raise ValueError(raw)
        return raw == "true"

    def cel_literal(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise TypeError(value)
