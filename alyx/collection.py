"""What the records service needs of one collection: spec, model, validators, serialiser, and the
prepared statements of its reads by id."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import peewee

from alyx import query as q
from alyx.db import RowReader, run_sql
from alyx.schema import CollectionSpec
from alyx.validation import RecordLoader, default_value, record_schema

IMMUTABLE = (str, int, float, bool, type(None))
_ID_SLOT = "\x00alyx-record-id"  # never a real id (ids are [a-z0-9]{15})


class Collection:
    """What the service needs of one collection: spec, model, validators, serialiser."""

    def __init__(self, spec: CollectionSpec, model: type[peewee.Model]) -> None:
        self.spec = spec
        self.model = model
        self.id_column = model._meta.fields["id"]
        self.create_schema = RecordLoader(record_schema(spec, partial=False))
        self.update_schema = RecordLoader(record_schema(spec, partial=True))
        self.visible = tuple(q.readable_fields(spec))
        self.visible_columns = [model._meta.fields[name] for name in self.visible]
        kinds = {name: q.field_kind(spec, name) for name in self.visible}
        encoded = [(name, kind) for name, kind in kinds.items() if kind is not None and kind.encodes]
        self.encoders = [(name, kind.to_json) for name, kind in encoded]
        # A read only to be shown goes from the driver's values to the JSON form in one pass (fetch_by_id).
        self._json_reads = {name: kind.stored_to_json(model._meta.fields[name]) for name, kind in encoded}
        self.decoders = [(name, kind.from_json) for name, kind in encoded]
        self.relations = {f.name: f.collection for f in spec.public_fields if f.collection is not None}
        self.defaults = {f.name: default_value(f) for f in spec.public_fields}
        self._shared_defaults = {k: v for k, v in self.defaults.items() if isinstance(v, IMMUTABLE)}
        self._copied_defaults = {k: v for k, v in self.defaults.items() if not isinstance(v, IMMUTABLE)}
        self._by_id: dict[tuple[str, ...], tuple[str, RowReader, RowReader]] = {}
        self._by_rule: dict[tuple[Any, ...], tuple[str, tuple[Any, ...], int, RowReader, RowReader]] = {}

    def fresh_defaults(self) -> dict[str, Any]:
        """The defaults of a new record; mutable ones (json lists, objects) copied, so no record shares them."""
        return {**self._shared_defaults, **{k: copy.deepcopy(v) for k, v in self._copied_defaults.items()}}

    def serialize(self, row: Mapping[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A stored row → its JSON form (RFC 3339 UTC datetimes, hidden fields dropped)."""
        names = fields or self.visible
        out = {name: row.get(name) for name in names}
        for name, to_json in self.encoders:
            value = out.get(name)
            if value is not None:
                out[name] = to_json(value)
        return out

    def from_json(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A serialised record with its values as stored (datetime/date strings parsed back), as rules
        and filters compare them; a value that does not parse is left as it is."""
        out = dict(doc)
        for name, from_json in self.decoders:
            value = out.get(name)
            if value is not None:
                out[name] = from_json(value)
        return out

    def columns(self, fields: tuple[str, ...] | None, expand: tuple[str, ...] = ()) -> list[peewee.Field]:
        """The columns to read: the requested ones, plus the relations to expand even when not shown."""
        if not fields:
            return self.visible_columns
        names = fields + tuple(name for name in expand if name not in fields)
        return [self.model._meta.fields[name] for name in names]

    def _readers(self, columns: list[peewee.Field]) -> tuple[RowReader, RowReader]:
        """A driver row of ``columns`` → its dict, as peewee's ``dicts()`` reads it; and → its JSON form,
        ``serialize(read(raw), names of columns)`` in one pass (for columns the caller may see)."""
        return RowReader(columns), RowReader(columns, self._json_reads)

    def fetch_by_id(self, database: peewee.Database, record_id: str, columns: list[peewee.Field],
                    as_json: bool = False) -> dict[str, Any] | None:
        """``SELECT columns WHERE id = ?`` for a caller no rule restricts, as peewee's ``dicts()`` would;
        ``as_json``: as ``serialize`` would then show it (columns the caller may see, no expand).

        peewee builds the SQL text once per column set (building it cost more than running it);
        every call still runs the query, so nothing read here is ever stale.
        """
        key = self.visible if columns is self.visible_columns else tuple(c.name for c in columns)
        plan = self._by_id.get(key)
        if plan is None:
            sql, _ = self.model.select(*columns).where(self.id_column == "").sql()
            plan = self._by_id[key] = (sql, *self._readers(columns))
        sql, read, read_json = plan
        raw = run_sql(database, sql, (record_id,)).fetchone()
        if raw is None:
            return None
        return read_json(raw) if as_json else read(raw)

    def fetch_by_id_where(self, database: peewee.Database, record_id: str, columns: list[peewee.Field],
                          condition: peewee.Node, key: tuple[Any, ...], as_json: bool = False) -> dict[str, Any] | None:
        """`fetch_by_id` plus an access-rule condition: SQL text and parameters kept per ``key``.

        ``key`` must name everything the condition depends on (operation, caller, columns); rules
        that read request.* are never passed here. The id is bound at each call.
        """
        plan = self._by_rule.get(key)
        if plan is None:
            sql, params = self.model.select(*columns).where(self.id_column == _ID_SLOT).where(condition).sql()
            if len(self._by_rule) >= 4096:
                self._by_rule.clear()
            plan = self._by_rule[key] = (sql, tuple(params), params.index(_ID_SLOT), *self._readers(columns))
        sql, template, slot, read, read_json = plan
        bound = list(template)
        bound[slot] = record_id
        raw = run_sql(database, sql, bound).fetchone()
        if raw is None:
            return None
        return read_json(raw) if as_json else read(raw)
