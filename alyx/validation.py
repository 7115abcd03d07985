"""Per-collection marshmallow schemas: strict JSON types, schema options, readable messages.

Each field's validator comes from its type (alyx/fields/); this module puts them together.
"""
from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields

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


def default_value(spec: FieldSpec) -> Any:
    """The default of a field as it is stored (a datetime for a datetime field, ...), or None."""
    return lookup(spec.type).stored_default(spec)


def check_default(spec: FieldSpec, value: Any) -> str | None:
    """Why ``value`` cannot be this field's default, or None when it can."""
    return lookup(spec.type).default_problem(spec, value)


__all__ = ["record_schema", "marshmallow_field", "check_default", "default_value", "RECORD_ID",
           "EXCLUDE"]
