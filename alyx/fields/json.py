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


def read_json(text: str | bytes) -> Any:
    """Stored JSON text as a value the response encoder can always write (the loads of every JSON column).

    PostgreSQL's jsonb keeps numbers as numeric, so ``1e20`` comes back as ``100000000000000000000``;
    orjson reads an integer beyond 64 bits as the float it was sent as. A number orjson refuses (beyond
    a double, only writable behind Alyx's back) is read with the standard library, wide integers as floats
    (an infinity is written as null).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_int=_int_or_float)


def _int_or_float(digits: str) -> int | float:
    return int(digits) if len(digits) <= 18 else float(digits)


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
        return peewee.JSONField(dumps=json_text, loads=read_json, null=True)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return read_json(value)  # numbers as every JSON column reads them
            except ValueError:
                return value
        return value

    def query_value(self, raw: str) -> Any:
        raise NoEquality(raw)
