"""The interface every field type implements, and FieldSpec: the settings of one declared field."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import peewee
from marshmallow import ValidationError, fields, validate

from alyx import cel

#: Models built so far, by collection name (a relation column points at one of them).
Models = dict[str, type[peewee.Model]]


@dataclass(frozen=True)
class FieldSpec:
    """One user-declared field of a collection."""

    name: str
    type: str
    required: bool = False
    unique: bool = False
    default: Any = None
    index: bool = False
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    values: tuple[str, ...] = ()
    collection: str | None = None
    on_delete: str = "set_null"
    renamed_from: str | None = None
    hidden: bool = False
    extra: tuple[tuple[str, Any], ...] = ()  # the type's own settings (FieldType.own_settings), normalised

    def setting(self, key: str, default: Any = None) -> Any:
        """One of the type's own settings (``extra``), or ``default``."""
        return next((value for name, value in self.extra if name == key), default)


class NoEquality(Exception):
    """The type cannot be filtered with a bare ``?field=value``."""


class SettingsProblem(NamedTuple):
    """Why a field's settings are refused: the key path below the field (``.values``, or ``""``),
    the message, and the schema.yaml key whose line to report (None: the field's line)."""

    where: str
    message: str
    key: str | None


class FieldType:
    """One field type: everything Alyx does differently per type lives in its subclass.

    A subclass that sets ``name`` is registered (alyx/fields/registry.py); one without (a shared
    base such as NumberType) is not. One instance per type serves every field of that type.
    """

    name: ClassVar[str]
    rank: ClassVar[int]  # where the type is listed (error messages, docs)
    family: ClassVar[cel.Family]  # how filters and rules compare it
    options: ClassVar[frozenset[str]] = frozenset()  # settings it accepts: min, max, pattern, values, ...
    length_bounds: ClassVar[bool] = True  # min/max are lengths (whole numbers >= 0), not a value range
    always_indexed: ClassVar[bool] = False
    sortable: ClassVar[bool] = True  # ?sort= may name it
    nullable_in_schema: ClassVar[bool] = True  # JSON Schema says nullable when not required
    encodes: ClassVar[bool] = False  # to_json/from_json change values (serialisers skip the other types)
    column_class: ClassVar[type[peewee.Field]]  # what ``column`` builds unless a type overrides it
    marshmallow_class: ClassVar[type[fields.Field[Any]]]  # what ``marshmallow`` builds ...
    base_schema: ClassVar[dict[str, Any]] = {}  # what ``value_schema`` starts from
    # generated clients (alyx/generate/): the value's type in each language, and a note for its docs;
    # a type that sets none of these still generates (as an opaque JSON value)
    ts_type: ClassVar[str] = "unknown"
    python_hint: ClassVar[str] = "Any"  # a type hint (NumberType.python_type is the parser)
    go_type: ClassVar[str] = "json.RawMessage"
    client_doc: ClassVar[str] = ""
    # the value names uploaded files: clients send the files apart (multipart/form-data), leave the field
    # out of create inputs, and build download URLs for it
    client_upload: ClassVar[bool] = False
    # the admin UI (static/admin/): which form widget edits a value of this type (text, textarea, integer,
    # number, toggle, date, datetime, select, relation, json, email, url, file)
    widget: ClassVar[str] = "json"

    def widget_settings(self, spec: FieldSpec) -> dict[str, Any]:
        """Settings of this type the admin UI's widget needs beyond the common ones (GET /api/collections)."""
        return {}

    # -- storage ------------------------------------------------------------------------------
    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        """The peewee column. User columns are nullable: ``required`` is validation, so adding a
        required field to a table with rows is a safe migration."""
        return self.column_class(null=True)

    def convert(self, value: Any) -> Any:
        """A stored value of another type → this type (migrations); may raise TypeError/ValueError/
        OverflowError, which mean "cannot convert" (the value becomes null)."""
        raise NotImplementedError

    # -- validation ---------------------------------------------------------------------------
    def validator(self, spec: FieldSpec, required: bool = False) -> fields.Field[Any]:
        """The marshmallow field that validates a value sent by a client."""
        return self.marshmallow(spec, required=required, allow_none=not spec.required)

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        return self.marshmallow_class(required=required, allow_none=allow_none)

    def default_problem(self, spec: FieldSpec, value: Any) -> str | None:
        """Why ``value`` cannot be this field's default, or None when it can."""
        try:
            self.validator(spec).deserialize(value)
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
            return f"invalid default {value!r}: {' '.join(str(m) for m in messages)}"
        return None

    def stored_default(self, spec: FieldSpec) -> Any:
        """The default as it is stored (a datetime for a datetime field, ...), or None."""
        return None if spec.default is None else self.validator(spec).deserialize(spec.default)

    def own_settings(self, settings: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The type's own settings (its ``options`` beyond the common ones: min, max, pattern, values,
        collection, on_delete) as stored in ``FieldSpec.extra``; called after ``settings_problem``."""
        return ()

    def settings_problem(self, settings: Mapping[str, Any]) -> SettingsProblem | None:
        """What is wrong with the type's own settings (``settings``: the keys read from schema.yaml so
        far); schema.py asks after reading the last of the type's ``options``."""
        return None

    # -- API description ----------------------------------------------------------------------
    def json_schema(self, spec: FieldSpec) -> dict[str, Any]:
        """JSON Schema of the field's value (OpenAPI)."""
        out = self.value_schema(spec)
        if spec.default is not None:
            out["default"] = spec.default
        if not spec.required and self.nullable_in_schema:
            out["nullable"] = True
        return out

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        """The JSON Schema of a value without the common parts (default, nullable)."""
        return dict(self.base_schema)

    def client_values(self, spec: FieldSpec) -> tuple[str, ...]:
        """The only values a field can hold, for clients' literal unions and enums (() when open)."""
        return ()

    def client_list(self, spec: FieldSpec) -> bool:
        """Whether clients type the value as a list of the type's client type (a multiple file field)."""
        return False

    def client_relation(self, spec: FieldSpec) -> str | None:
        """The collection whose record id the value is (clients type its ``expand``), or None."""
        return None

    # -- queries ------------------------------------------------------------------------------
    def query_value(self, raw: str) -> Any:
        """A bare ``?field=value`` text as a value of this type; ValueError when it is not one,
        NoEquality when the type cannot be filtered that way."""
        return raw

    def cel_literal(self, value: Any) -> Any:
        """A non-null CEL literal made comparable with a column of this type (cel.Coercer)."""
        raise TypeError(value)

    # -- JSON form ----------------------------------------------------------------------------
    def to_json(self, value: Any) -> Any:
        """A stored value → its JSON form."""
        return value

    def from_json(self, value: Any) -> Any:
        """A JSON form → the stored value, as rules and filters compare it (left as is when invalid)."""
        return value

    def stored_to_json(self, column: peewee.Field) -> Callable[[Any], Any]:
        """A driver's non-null value of ``column`` → its JSON form in one step (``to_json`` of its
        ``python_value``): how a record read only to be shown is read (Collection.fetch_by_id)."""
        python_value: Callable[[Any], Any] = column.python_value
        to_json = self.to_json
        return lambda value: to_json(python_value(value))


def length_validators(spec: FieldSpec) -> list[validate.Validator]:
    """The min/max length check of a text field, if it has bounds."""
    if spec.min is None and spec.max is None:
        return []
    return [validate.Length(min=int(spec.min) if spec.min is not None else None,
                            max=int(spec.max) if spec.max is not None else None)]
