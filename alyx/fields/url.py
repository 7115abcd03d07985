"""The url type: a string that must be a URL."""
from __future__ import annotations

from typing import Any

from marshmallow import validate

from alyx.fields.base import FieldSpec
from alyx.fields.string import StringType


class UrlType(StringType):
    """A URL (a top-level domain is not required: http://localhost is one); format ``uri``."""

    name = "url"
    widget = "url"
    rank = 100

    def checks(self, spec: FieldSpec) -> list[Any]:
        return [validate.URL(require_tld=False)]

    def format_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"format": "uri"}
