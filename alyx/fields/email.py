"""The email type: a string that must be an email address."""
from __future__ import annotations

from typing import Any

from marshmallow import validate

from alyx.fields.base import FieldSpec
from alyx.fields.string import StringType


class EmailType(StringType):
    """An email address (marshmallow's check); JSON Schema format ``email``."""

    name = "email"
    widget = "email"
    rank = 90

    def checks(self, spec: FieldSpec) -> list[Any]:
        return [validate.Email()]

    def format_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"format": "email"}
