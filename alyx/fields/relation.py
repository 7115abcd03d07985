"""The relation type: the id of a record in another (or the same) collection, as a foreign key."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee

from alyx.fields.base import FieldSpec, Models, SettingsProblem
from alyx.fields.strict import RecordId
from alyx.fields.string import StringType

ON_DELETE_SQL = {"cascade": "CASCADE", "set_null": "SET NULL", "restrict": "RESTRICT"}
ON_DELETE = tuple(ON_DELETE_SQL)


class RelationType(StringType):
    """A record id (15 characters a-z0-9) that must exist in ``collection``; always indexed; compares
    and converts as text."""

    name = "relation"
    widget = "relation"
    rank = 130
    options = frozenset({"collection", "on_delete"})
    always_indexed = True
    marshmallow_class = RecordId
    non_empty_when_required = False  # a record id is never empty anyway

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        target: Any = "self" if spec.collection == collection else models[str(spec.collection)]
        return peewee.ForeignKeyField(target, column_name=spec.name, object_id_name=f"{spec.name}_ref",
                                      backref="+", on_delete=ON_DELETE_SQL[spec.on_delete], lazy_load=False,
                                      null=True)

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[a-z0-9]{15}$", "description": f"id of a {spec.collection} record"}

    def client_relation(self, spec: FieldSpec) -> str | None:
        return spec.collection

    def settings_problem(self, settings: Mapping[str, Any]) -> SettingsProblem | None:
        if not settings.get("collection"):
            return SettingsProblem("", "relation fields need 'collection: <name>'", None)
        on_delete = settings.get("on_delete", "set_null")
        if on_delete not in ON_DELETE:
            return SettingsProblem(".on_delete", f"expected one of {', '.join(ON_DELETE)}, got {on_delete!r}",
                                   "on_delete")
        return None
