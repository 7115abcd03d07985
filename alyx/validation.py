"""Per-collection marshmallow schemas: strict JSON types, schema options, readable messages."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from alyx.schema import CollectionSpec, FieldSpec

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class StrictBool(fields.Boolean):
    """Only JSON true/false: "0", 1 or "yes" are rejected instead of guessed."""

    default_error_messages = {"invalid": "Not a valid boolean (expected true or false)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInt(fields.Integer):
    """A JSON integer within 64 bits; strings, floats and booleans are rejected."""

    default_error_messages = {"invalid": "Not a valid integer.",
                              "range": "Integer out of range (64-bit signed)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.make_error("invalid")
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.make_error("range")
        return value


class StrictFloat(fields.Float):
    """A finite JSON number; strings and booleans are rejected."""

    default_error_messages = {"invalid": "Not a valid number.", "special": "Number must be finite."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.make_error("special")
        return value


class StrictString(fields.String):
    """A JSON string without NUL characters (PostgreSQL cannot store them)."""

    default_error_messages = {"invalid": "Not a valid string.", "nul": "Strings may not contain NUL characters."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if "\x00" in value:
            raise self.make_error("nul")
        return value


class IsoDateTime(fields.Field):
    """RFC 3339 date-time; naive values are taken as UTC; stored as naive UTC."""

    default_error_messages = {"invalid": "Not a valid date-time (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dt.datetime:
        parsed = parse_datetime(value)
        if parsed is None:
            raise self.make_error("invalid")
        return parsed


class IsoDate(fields.Field):
    default_error_messages = {"invalid": "Not a valid date (expected YYYY-MM-DD)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dt.date:
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise self.make_error("invalid")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None


MAX_JSON_DEPTH = 64


class JsonValue(fields.Raw):
    """Any JSON value up to MAX_JSON_DEPTH levels (responses must serialise it); NUL characters in strings
    are refused for PostgreSQL's sake."""

    default_error_messages = {"nul": "Strings may not contain NUL characters.",
                              "deep": f"JSON values may nest at most {MAX_JSON_DEPTH} levels."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_JSON_DEPTH:
                raise self.make_error("deep")
            if isinstance(item, str) and "\x00" in item:
                raise self.make_error("nul")
            if isinstance(item, dict):
                stack += [(k, depth) for k in item] + [(v, depth + 1) for v in item.values()]
            elif isinstance(item, list):
                stack += [(v, depth + 1) for v in item]
        return value


class RecordId(StrictString):
    default_error_messages = {"invalid_id": "Not a valid record id (15 characters a-z0-9)."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        if not RECORD_ID.fullmatch(value):
            raise self.make_error("invalid_id")
        return value


RECORD_ID = re.compile(r"[a-z0-9]{15}")


def parse_datetime(value: Any) -> dt.datetime | None:
    """RFC 3339 (or 'YYYY-MM-DD HH:MM:SS') → naive UTC datetime, or None when it is not one."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                                                      r"(Z|z|[+-]\d{2}:\d{2})?", value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None
    return parsed


def _length(spec: FieldSpec) -> list[validate.Validator]:
    if spec.min is None and spec.max is None:
        return []
    return [validate.Length(min=int(spec.min) if spec.min is not None else None,
                            max=int(spec.max) if spec.max is not None else None)]


def _range(spec: FieldSpec) -> list[validate.Validator]:
    if spec.min is None and spec.max is None:
        return []
    return [validate.Range(min=spec.min, max=spec.max)]


def marshmallow_field(spec: FieldSpec, required: bool = False) -> fields.Field:
    """The marshmallow field that validates one schema field."""
    kwargs: dict[str, Any] = {"required": required, "allow_none": not spec.required}
    validators: list[validate.Validator] = []
    t = spec.type
    if t in ("string", "text", "email", "url", "uuid", "select", "relation"):
        validators += _length(spec)
        if spec.pattern:
            validators.append(validate.Regexp(spec.pattern, error=f"Does not match the pattern {spec.pattern}."))
        if t == "email":
            validators.append(validate.Email())
        elif t == "url":
            validators.append(validate.URL(require_tld=False))
        elif t == "uuid":
            validators.append(_uuid_validator)
        elif t == "select":
            validators.append(validate.OneOf(spec.values))
        if t == "relation":
            return RecordId(validate=validators, **kwargs)
        if spec.required:
            validators.append(validate.Length(min=1, error="Must not be empty."))
        return StrictString(validate=validators, **kwargs)
    if t == "int":
        return StrictInt(validate=_range(spec), **kwargs)
    if t == "float":
        return StrictFloat(validate=_range(spec), **kwargs)
    if t == "bool":
        return StrictBool(**kwargs)
    if t == "datetime":
        return IsoDateTime(**kwargs)
    if t == "date":
        return IsoDate(**kwargs)
    if t == "json":
        return JsonValue(**kwargs)
    raise ValueError(f"unhandled field type {t}")


def _uuid_validator(value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValidationError("Not a valid UUID.") from None


class RecordSchema(Schema):
    class Meta:
        unknown = RAISE


def record_schema(spec: CollectionSpec, partial: bool) -> Schema:
    """A marshmallow Schema validating a create (partial=False) or an update of a collection.

    Defaults are filled by the records service, so a required field with a default may be omitted.
    """
    declared = {f.name: marshmallow_field(f, required=not partial and f.required and f.default is None)
                for f in spec.public_fields}
    declared["id"] = RecordId(required=False)
    schema_cls = RecordSchema.from_dict(declared, name=f"{spec.name.title()}Record")
    return schema_cls(partial=partial)


def default_value(spec: FieldSpec) -> Any:
    """The default of a field as it is stored (a datetime for a datetime field, ...), or None."""
    return None if spec.default is None else marshmallow_field(spec).deserialize(spec.default)


def check_default(spec: FieldSpec, value: Any) -> str | None:
    """Why ``value`` cannot be this field's default, or None when it can."""
    try:
        marshmallow_field(spec).deserialize(value)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
        return f"invalid default {value!r}: {' '.join(str(m) for m in messages)}"
    return None


__all__ = ["record_schema", "marshmallow_field", "check_default", "default_value", "parse_datetime", "RECORD_ID",
           "EXCLUDE"]
