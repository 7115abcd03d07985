"""Per-collection marshmallow schemas: strict JSON types, schema options, readable messages.

Each field's validator comes from its type (alyx/fields/); this module puts them together.
"""
from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing

from alyx.fields.registry import lookup
from alyx.fields.strict import RECORD_ID, RecordId
from alyx.schema import CollectionSpec, FieldSpec


def marshmallow_field(spec: FieldSpec, required: bool = False) -> fields.Field[Any]:
    """The marshmallow field that validates one schema field."""
    return lookup(spec.type).validator(spec, required)


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


class RecordLoader:
    """``schema.load`` of a record body, with marshmallow's schema machinery skipped when the body is valid.

    A valid create spent more time in ``Schema.load``'s bookkeeping than in its fields. For a schema
    with no hooks, data keys, attributes or load defaults (every record schema), a body whose keys
    are all known and whose required fields are all there is loaded by calling each field's own
    ``deserialize`` (or, for a non-null value of a field without pre/post-load functions, what that
    does: ``_deserialize``, then its validators), in the schema's field order. Anything
    else (an unknown key, a missing field, any field refusing its value) goes to ``Schema.load``
    itself, so every error, message and detail is marshmallow's.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.fields = dict(schema.load_fields)
        self.required = tuple(name for name, f in self.fields.items() if f.required)
        self.kwargs: dict[str, Any] = {} if schema.partial is None else {"partial": schema.partial}
        self.quick = (not any(schema._hooks.values()) and schema.opts.unknown == RAISE
                      and all(f.data_key is None and f.attribute is None and f.load_default is missing
                              and "." not in name for name, f in self.fields.items()))
        # Fields whose ``deserialize`` is, for a present non-null value, ``_deserialize`` then each
        # validator (no pre_load/post_load functions): called that way directly, without building
        # marshmallow's ``And`` of the validators for every value.
        self.direct = {name for name, f in self.fields.items() if not f.pre_load and not f.post_load}

    def load(self, body: Any) -> dict[str, Any]:
        """What ``schema.load(body)`` returns, or raises its ValidationError."""
        if not self.quick or not isinstance(body, dict) or not all(key in self.fields for key in body) \
                or (self.schema.partial is not True and not all(name in body for name in self.required)):
            return self._full(body)
        loaded: dict[str, Any] = {}
        direct, kwargs = self.direct, self.kwargs
        try:
            for name, field in self.fields.items():
                if name not in body:
                    continue
                raw = body[name]
                if raw is not None and name in direct:
                    value = field._deserialize(raw, name, body, **kwargs)
                    for validator in field.validators:
                        if validator(value) is False:  # how a plain function refuses, for marshmallow
                            return self._full(body)
                else:
                    value = field.deserialize(raw, name, body, **kwargs)
                if value is not missing:
                    loaded[name] = value
        except ValidationError:
            return self._full(body)  # marshmallow's own errors, for every field at once
        return loaded

    def _full(self, body: Any) -> dict[str, Any]:
        loaded: dict[str, Any] = self.schema.load(body)
        return loaded


def default_value(spec: FieldSpec) -> Any:
    """The default of a field as it is stored (a datetime for a datetime field, ...), or None."""
    return lookup(spec.type).stored_default(spec)


def check_default(spec: FieldSpec, value: Any) -> str | None:
    """Why ``value`` cannot be this field's default, or None when it can."""
    return lookup(spec.type).default_problem(spec, value)


__all__ = ["record_schema", "RecordLoader", "marshmallow_field", "check_default", "default_value", "RECORD_ID",
           "EXCLUDE"]
