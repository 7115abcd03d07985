"""The select type: one of a fixed list of strings."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import validate

from alyx.fields.base import FieldSpec, SettingsProblem
from alyx.fields.string import StringType


class SelectType(StringType):
    """One of ``values``; JSON Schema ``enum``."""

    name = "select"
    widget = "select"
    rank = 120
    options = frozenset({"values"})
    schema_says_non_empty = False  # the enum says it already

    def checks(self, spec: FieldSpec) -> list[Any]:
        return [validate.OneOf(spec.values)]

    def format_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"enum": list(spec.values)}

    def client_values(self, spec: FieldSpec) -> tuple[str, ...]:
        return spec.values

    def settings_problem(self, settings: Mapping[str, Any]) -> SettingsProblem | None:
        values = settings.get("values")
        if not values or not all(isinstance(v, str) for v in values):
            return SettingsProblem(".values", "select fields need a non-empty list of string values",
                                   "values" if values is not None else None)
        return None
