"""The json type: any JSON value, stored as JSON text."""
from __future__ import annotations

import json
from typing import Any

import orjson
import peewee

from alyx import cel
from alyx.fields.base import FieldSpec, FieldType, Models, NoEquality
from alyx.fields.strict import JsonValue


def json_text(value: object) -> str:
    """A value as compact JSON text (orjson: what the column stores)."""
    return orjson.dumps(value).decode()


class JsonType(FieldType):
    """Any JSON value up to 64 levels; null is a value, so never "nullable" in the JSON Schema; filters
    and rules only compare it with null."""

    name = "json"
    widget = "json"
    rank = 80
    family = cel.Family.OPAQUE
    client_doc = "any JSON value"
    nullable_in_schema = False
    sortable = False
    marshmallow_class = JsonValue

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        return peewee.JSONField(dumps=json_text, null=True)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def query_value(self, raw: str) -> Any:
        raise NoEquality(raw)
