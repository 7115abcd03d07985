"""The string type, and the base of every type stored as text (text, email, url, uuid, select, relation)."""
from __future__ import annotations

import json
from typing import Any, ClassVar

import peewee
from marshmallow import fields, validate

from alyx import cel
from alyx.fields.base import FieldSpec, FieldType, length_validators
from alyx.fields.strict import StrictString


class StringType(FieldType):
    """A short string: min/max length, pattern. Subclasses add checks (``checks``) and a format."""

    name = "string"
    widget = "text"
    rank = 10
    family = cel.Family.TEXT
    options = frozenset({"min", "max", "pattern"})
    column_class = peewee.TextField
    marshmallow_class = StrictString
    ts_type, python_hint, go_type = "string", "str", "string"
    base_schema = {"type": "string"}
    non_empty_when_required: ClassVar[bool] = True  # a required value may not be ""
    schema_says_non_empty: ClassVar[bool] = True  # ... and the JSON Schema says so (minLength 1)

    def convert(self, value: Any) -> Any:
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        validators = length_validators(spec)
        if spec.pattern:
            validators.append(validate.Regexp(spec.pattern, error=f"Does not match the pattern {spec.pattern}."))
        validators += self.checks(spec)
        if spec.required and self.non_empty_when_required:
            validators.append(validate.Length(min=1, error="Must not be empty."))
        return self.marshmallow_class(validate=validators, required=required, allow_none=allow_none)

    def checks(self, spec: FieldSpec) -> list[Any]:
        """The type's own value checks, after length and pattern."""
        return []

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        out = dict(self.base_schema)
        if spec.min is not None:
            out["minLength"] = int(spec.min)
        elif spec.required and self.schema_says_non_empty:
            out["minLength"] = 1
        if spec.max is not None:
            out["maxLength"] = int(spec.max)
        if spec.pattern:
            out["pattern"] = spec.pattern
        out.update(self.format_schema(spec))
        return out

    def format_schema(self, spec: FieldSpec) -> dict[str, Any]:
        """What the JSON Schema adds for this type (a format, an enum)."""
        return {}

    def cel_literal(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        raise TypeError(value)
