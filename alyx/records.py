"""The records service: the one read and write path (validate → rule → write → change event).

Every later feature plugs in here: rules decide, hooks and realtime subscribe to change events,
which are published only after the write transaction commits.
"""
from __future__ import annotations

import builtins
import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee
from marshmallow import ValidationError

from alyx import query as q
from alyx.clock import utcnow
from alyx.db import Database, dict_row, dict_rows
from alyx.errors import AlyxError, bad_request, not_found, validation_failed
from alyx.models import new_id
from alyx.rules import AccessRules, Principal, RequestInfo
from alyx.schema import CollectionSpec, Schema
from alyx.validation import RECORD_ID, default_value, record_schema

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
AUTH_ADMIN_FIELDS = frozenset({"role", "verified"})


@dataclass(frozen=True)
class ChangeEvent:
    """A committed change to one record (published after commit, never for a rollback)."""

    collection: str
    action: str  # create | update | delete
    record: dict[str, Any]
    previous: dict[str, Any] | None = None


Listener = Callable[[ChangeEvent], None]
# A guard sees a write before its transaction: (collection, action, document, previous) → fields to change
# (or None); it refuses the write by raising AlyxError. Database hooks with mode: sync are guards.
Guard = Callable[[str, str, dict[str, Any], "dict[str, Any] | None"], "Mapping[str, Any] | None"]
GuardFilter = Callable[[str, str], bool]


class Collection:
    """What the service needs of one collection: spec, model, validators, serialiser."""

    def __init__(self, spec: CollectionSpec, model: type[peewee.Model]) -> None:
        self.spec = spec
        self.model = model
        self.id_column = model._meta.fields["id"]
        self.create_schema = record_schema(spec, partial=False)
        self.update_schema = record_schema(spec, partial=True)
        self.visible = q.readable_fields(spec)
        self.visible_columns = [model._meta.fields[name] for name in self.visible]
        kinds = {name: q.field_kind(spec, name) for name in self.visible}
        encoded = [(name, kind) for name, kind in kinds.items() if kind is not None and kind.encodes]
        self.encoders = [(name, kind.to_json) for name, kind in encoded]
        self.decoders = [(name, kind.from_json) for name, kind in encoded]
        self.relations = {f.name: f.collection for f in spec.public_fields if f.collection is not None}
        self.defaults = {f.name: default_value(f) for f in spec.public_fields}
        self._by_id: dict[tuple[str, ...], tuple[str, list[tuple[str, Callable[[Any], Any]]]]] = {}
        self._by_rule: dict[tuple[Any, ...], tuple[str, tuple[Any, ...], int, list[tuple[str, Any]]]] = {}

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

    def fetch_by_id(self, database: peewee.Database, record_id: str, columns: list[peewee.Field]
                    ) -> dict[str, Any] | None:
        """``SELECT columns WHERE id = ?`` for a caller no rule restricts, as peewee's ``dicts()`` would.

        peewee builds the SQL text once per column set (building it cost more than running it);
        every call still runs the query, so nothing read here is ever stale.
        """
        key = tuple(c.name for c in columns)
        plan = self._by_id.get(key)
        if plan is None:
            sql, _ = self.model.select(*columns).where(self.id_column == "").sql()
            plan = self._by_id[key] = (sql, [(c.name, c.python_value) for c in columns])
        sql, converters = plan
        raw = database.execute_sql(sql, (record_id,)).fetchone()  # type: ignore[no-untyped-call]
        if raw is None:
            return None
        return {name: convert(value) for (name, convert), value in zip(converters, raw, strict=True)}

    def fetch_by_id_where(self, database: peewee.Database, record_id: str, columns: list[peewee.Field],
                          condition: peewee.Node, key: tuple[Any, ...]) -> dict[str, Any] | None:
        """`fetch_by_id` plus an access-rule condition: SQL text and parameters kept per ``key``.

        ``key`` must name everything the condition depends on (operation, caller, columns); rules
        that read request.* are never passed here. The id is bound at each call.
        """
        plan = self._by_rule.get(key)
        if plan is None:
            sql, params = self.model.select(*columns).where(self.id_column == _ID_SLOT).where(condition).sql()
            if len(self._by_rule) >= 4096:
                self._by_rule.clear()
            plan = self._by_rule[key] = (sql, tuple(params), params.index(_ID_SLOT),
                                         [(c.name, c.python_value) for c in columns])
        sql, template, slot, converters = plan
        bound = list(template)
        bound[slot] = record_id
        raw = database.execute_sql(sql, bound).fetchone()  # type: ignore[no-untyped-call]
        if raw is None:
            return None
        return {name: convert(value) for (name, convert), value in zip(converters, raw, strict=True)}


_ID_SLOT = "\x00alyx-record-id"  # never a real id (ids are [a-z0-9]{15})


class Records:
    """List, view, create, update and delete records, with rules applied and changes published."""

    def __init__(self, db: Database, schema: Schema, models: Mapping[str, type[peewee.Model]],
                 access: AccessRules, default_per_page: int = 30, max_per_page: int = 500) -> None:
        self.db = db
        self.schema = schema
        self.access = access
        self.collections = {name: Collection(schema.collections[name], model) for name, model in models.items()}
        self.default_per_page = default_per_page
        self.max_per_page = max_per_page
        self.listeners: builtins.list[Listener] = []
        self.guards: builtins.list[tuple[Guard, GuardFilter]] = []
        self.journal_writers: builtins.list[Listener] = []

    # -- lookup ---------------------------------------------------------------------------------
    def collection(self, name: str) -> Collection:
        found = self.collections.get(name)
        if found is None:
            raise not_found(f"Collection {name!r} does not exist.")
        return found

    def guard(self, check: Guard, applies: GuardFilter) -> None:
        """Call ``check`` before writes for which ``applies(collection, action)`` is true (outside the transaction)."""
        self.guards.append((check, applies))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every ChangeEvent, after its transaction commits."""
        self.listeners.append(listener)

    def journal(self, writer: Listener) -> None:
        """Call ``writer`` with every ChangeEvent inside its write transaction, before commit (the change feed)."""
        self.journal_writers.append(writer)

    # -- reads ----------------------------------------------------------------------------------
    def list(self, name: str, args: Mapping[str, str], auth: Principal | None = None,
             request: RequestInfo | None = None) -> dict[str, Any]:
        """One page of the records the caller may see, in the DESIGN.md list envelope."""
        coll = self.collection(name)
        lq = q.parse_list_query(coll.spec, args, self.default_per_page, self.max_per_page,
                                self.access.query_params(name))
        page = self.page(coll, lq, auth, request)
        items = [coll.serialize(row, lq.fields) for row in page.rows]
        pages = -1 if page.total < 0 else math.ceil(page.total / lq.per_page)
        if lq.expand:
            self._expand(coll, page.rows, items, lq.expand, auth, request)
        return {"items": items, "page": lq.page, "perPage": lq.per_page, "totalItems": page.total,
                "totalPages": pages}

    def page(self, coll: Collection, lq: q.ListQuery, auth: Principal | None, request: RequestInfo | None = None,
             operations: tuple[str, ...] = ("list",)) -> q.Page:
        """The one list query, for REST lists and realtime snapshots alike.

        Filter and bare equality, the rules of ``operations`` (as SQL, plus a per-row test for a
        rule SQL cannot express), order (creation order without ``sort``), paging and count. Runs on
        the caller's connection, so a snapshot can read it inside its own transaction.
        """
        conditions = q.compile_where(lq, coll.spec, coll.model, not self.db.is_sqlite)
        tests: q.RowTests = []
        for op in operations:
            visibility = self.access.visibility(coll.spec.name, op, auth, request)
            if visibility.sql is not None:
                conditions.append(visibility.sql)
            if visibility.test is not None:
                tests.append(visibility.test)
        columns = coll.model._meta.sorted_fields if tests else coll.columns(lq.fields, lq.expand)
        return q.select_page(coll.model, columns, lq, conditions, tests, self.db.is_sqlite)

    def view(self, name: str, record_id: str, args: Mapping[str, str] | None = None,
             auth: Principal | None = None, request: RequestInfo | None = None) -> dict[str, Any]:
        """One record, or 404 when it does not exist or the view rule hides it."""
        coll = self.collection(name)
        args = args or {}
        fields = q.parse_fields(coll.spec, args.get("fields"))
        expand = q.parse_expand(coll.spec, args.get("expand"))
        row = self._fetch(coll, record_id, "view", auth, request, coll.columns(fields, expand))
        item = coll.serialize(row, fields)
        if expand:
            self._expand(coll, [row], [item], expand, auth, request)
        return item

    def view_unchecked(self, name: str, record_id: str) -> dict[str, Any]:
        """One record without rules, for server-side services that already decided (GET /api/auth/me)."""
        coll = self.collection(name)
        return coll.serialize(self._fetch(coll, record_id, "view", None, None, coll.visible_columns, admin=True))

    def validate(self, name: str, body: Any, partial: bool = False) -> dict[str, Any]:
        """The body validated as a create (or partial update) of ``name``, without writing (422 if invalid)."""
        return self._load(self.collection(name), body, partial)

    def _fetch(self, coll: Collection, record_id: str, op: str, auth: Principal | None,
               request: RequestInfo | None, columns: builtins.list[peewee.Field] | None = None, admin: bool = False
               ) -> dict[str, Any]:
        if not RECORD_ID.fullmatch(record_id):  # never stored; and PostgreSQL refuses NUL characters
            raise not_found(f"Record {record_id[:40]!r} not found in {coll.spec.name!r}.")
        visibility = None if admin else self.access.visibility(coll.spec.name, op, auth, request)
        if visibility is not None and visibility.test is not None:
            columns = None  # the per-record test needs every field
        if visibility is None or (visibility.sql is None and visibility.test is None):
            row = coll.fetch_by_id(self.db.peewee, record_id, columns or coll.model._meta.sorted_fields)
        elif visibility.test is None and visibility.sql is not None and not self.access.rule(coll.spec.name,
                                                                                               op).reads_request:
            columns = columns or coll.model._meta.sorted_fields
            row = coll.fetch_by_id_where(self.db.peewee, record_id, columns, visibility.sql,
                                         (op, auth, tuple(c.name for c in columns)))
        else:
            query = coll.model.select(*(columns or coll.model._meta.sorted_fields)).where(coll.id_column == record_id)
            if visibility.sql is not None:
                query = query.where(visibility.sql)
            row = dict_row(query)
        if row is not None and visibility is not None and visibility.test is not None and not visibility.test(row):
            row = None
        if row is None:
            raise not_found(f"Record {record_id!r} not found in {coll.spec.name!r}.")
        return row

    def _expand(self, coll: Collection, rows: builtins.list[dict[str, Any]], items: builtins.list[dict[str, Any]],
                expand: tuple[str, ...], auth: Principal | None, request: RequestInfo | None) -> None:
        for field_name in expand:
            target = self.collections[coll.relations[field_name]]
            ids = {row.get(field_name) for row in rows if row.get(field_name)}
            if not ids:
                continue
            visibility = self.access.visibility(target.spec.name, "view", auth, request)
            columns = target.visible_columns if visibility.test is None else target.model._meta.sorted_fields
            query = target.model.select(*columns).where(target.id_column.in_(list(ids)))
            if visibility.sql is not None:
                query = query.where(visibility.sql)
            related = {r["id"]: target.serialize(r) for r in dict_rows(query)
                       if visibility.test is None or visibility.test(r)}
            for row, item in zip(rows, items, strict=True):
                ref = row.get(field_name)
                if ref in related:
                    item.setdefault("expand", {})[field_name] = related[ref]

    # -- writes ---------------------------------------------------------------------------------
    def create(self, name: str, body: Any, auth: Principal | None = None, request: RequestInfo | None = None,
               *, server_values: Mapping[str, Any] | None = None, check_rule: bool = True) -> dict[str, Any]:
        """Validate, check the create rule, insert; 201-ready record.

        ``server_values`` and ``check_rule`` are for server-side services only (the auth service
        setting a password hash or an admin's role); no HTTP input ever reaches them.
        """
        coll = self.collection(name)
        data = self._load(coll, body, partial=False)
        self._check_auth_fields(coll, data, auth)
        now = utcnow()
        record = {**{k: copy.deepcopy(v) for k, v in coll.defaults.items()}, **data, **(server_values or {})}
        record["id"] = data.get("id") or new_id()
        record["created_at"] = record["updated_at"] = now
        if check_rule and not self.access.allows(name, "create", auth, record, request):
            raise AlyxError("forbidden", f"You are not allowed to create records in {name!r}.", 403)
        changes = self._run_guards(coll, "create", record, None)
        if changes:
            record.update(changes)
            data.update(changes)
        with self._write(coll):
            self._check_relations(coll, data)
            self.db.insert(coll.model, record)
            created = coll.serialize(record)
            self._publish(ChangeEvent(name, "create", created))
        return created

    def update(self, name: str, record_id: str, body: Any, auth: Principal | None = None,
               request: RequestInfo | None = None, *, server_values: Mapping[str, Any] | None = None,
               check_rule: bool = True) -> dict[str, Any]:
        """Partial update: 404 if hidden, 403 if the update rule refuses (see create for the keywords)."""
        coll = self.collection(name)
        data = self._load(coll, body, partial=True)
        if "id" in data and data["id"] != record_id:
            raise validation_failed({"id": ["The id of a record cannot be changed."]})
        data.pop("id", None)
        self._check_auth_fields(coll, data, auth)
        if self._guards_for(name, "update"):
            before = (self._fetch_writable(coll, record_id, "update", auth, request) if check_rule
                      else self._fetch(coll, record_id, "view", None, request, admin=True))
            data.update(self._run_guards(coll, "update", {**before, **data, **(server_values or {})}, before))
        with self._write(coll):
            if check_rule:
                stored = self._fetch_writable(coll, record_id, "update", auth, request)
            else:
                stored = self._fetch(coll, record_id, "view", None, request, admin=True)
            if coll.spec.auth and "email" in data and data["email"] != stored.get("email") \
                    and not (auth is not None and auth.is_admin) and "verified" not in (server_values or {}):
                data["verified"] = False  # a new address is not verified (OAuth links accounts by verified email)
            data.update(server_values or {})
            self._check_relations(coll, data)
            data["updated_at"] = utcnow()
            coll.model.update(data).where(coll.id_column == record_id).execute()
            record = {**stored, **data}
            self._publish(ChangeEvent(name, "update", coll.serialize(record), coll.serialize(stored)))
        return coll.serialize(record)

    def delete(self, name: str, record_id: str, auth: Principal | None = None,
               request: RequestInfo | None = None) -> None:
        """Delete: 404 if hidden, 403 if the delete rule refuses, 409 if a restrict relation holds it."""
        coll = self.collection(name)
        if self._guards_for(name, "delete"):
            self._run_guards(coll, "delete", self._fetch_writable(coll, record_id, "delete", auth, request), None)
        with self._write(coll):
            stored = self._fetch_writable(coll, record_id, "delete", auth, request)
            coll.model.delete().where(coll.id_column == record_id).execute()
            self._publish(ChangeEvent(name, "delete", coll.serialize(stored)))

    def _fetch_writable(self, coll: Collection, record_id: str, op: str, auth: Principal | None,
                        request: RequestInfo | None) -> dict[str, Any]:
        """The stored record: 404 when the view rule hides it, 403 when the `op` rule refuses."""
        stored = self._fetch(coll, record_id, "view", auth, request)
        if not self.access.allows(coll.spec.name, op, auth, stored, request):
            raise AlyxError("forbidden", f"You are not allowed to {op} this record.", 403)
        return stored

    @staticmethod
    def _check_auth_fields(coll: Collection, data: Mapping[str, Any], auth: Principal | None) -> None:
        """On the auth collection only admins set `role` and `verified` (else: self-promotion)."""
        if not coll.spec.auth or (auth is not None and auth.is_admin):
            return
        locked = sorted(AUTH_ADMIN_FIELDS & data.keys())
        if locked:
            raise AlyxError("forbidden", f"Only admins can set {', '.join(locked)} of {coll.spec.name!r} records.",
                            403, {name: ["Only admins can set this field."] for name in locked})

    def _guards_for(self, name: str, action: str) -> builtins.list[Guard]:
        return [check for check, applies in self.guards if applies(name, action)]

    def _run_guards(self, coll: Collection, action: str, document: dict[str, Any],
                    previous: dict[str, Any] | None) -> dict[str, Any]:
        """Run the guards of a write; the fields they change are validated like a partial update."""
        checks = self._guards_for(coll.spec.name, action)
        changes: dict[str, Any] = {}
        for check in checks:
            extra = check(coll.spec.name, action, coll.serialize({**document, **changes}),
                          coll.serialize(previous) if previous is not None else None)
            if extra:
                changes.update(extra)
        for system in ("id", "created_at", "updated_at"):
            changes.pop(system, None)
        return self._load(coll, changes, partial=True) if changes and action != "delete" else {}

    def _write(self, coll: Collection) -> Any:
        return _WriteTransaction(self, coll)

    def _publish(self, event: ChangeEvent) -> None:
        for writer in self.journal_writers:
            writer(event)
        if self.listeners:
            self.db.peewee.after_commit(lambda: self._deliver(event))

    def _deliver(self, event: ChangeEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def _load(self, coll: Collection, body: Any, partial: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        schema = coll.update_schema if partial else coll.create_schema
        try:
            loaded: dict[str, Any] = schema.load(body)
            return loaded
        except ValidationError as exc:
            normalized = exc.normalized_messages()  # type: ignore[no-untyped-call]
            details = {k: v if isinstance(v, list) else [str(v)] for k, v in normalized.items()}
            for key, messages in details.items():
                if messages == ["Unknown field."]:
                    details[key] = [f"Unknown field: {coll.spec.name!r} has no field {key!r}."]
            raise validation_failed(details) from None

    def _check_relations(self, coll: Collection, data: Mapping[str, Any]) -> None:
        missing: dict[str, builtins.list[str]] = {}
        for field_name, target_name in coll.relations.items():
            ref = data.get(field_name)
            if ref is None:
                continue
            target = self.collections[target_name]
            if not target.model.select(target.id_column).where(target.id_column == ref).exists():
                missing[field_name] = [f"No record {ref!r} in {target_name!r}."]
        if missing:
            raise validation_failed(missing, "A related record does not exist.")


class _WriteTransaction:
    """The write transaction of one record write, with database errors turned into 409s."""

    def __init__(self, records: Records, coll: Collection) -> None:
        self.records, self.coll = records, coll
        self.ctx = records.db.write()

    def __enter__(self) -> None:
        self.ctx.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            suppressed = self.ctx.__exit__(exc_type, exc, tb)
        except peewee.IntegrityError as late:
            exc = late
            suppressed = False
        if isinstance(exc, peewee.IntegrityError):
            raise integrity_error(self.coll.spec, exc) from None
        return bool(suppressed)


def integrity_error(spec: CollectionSpec, exc: peewee.IntegrityError) -> AlyxError:
    """A database constraint violation → 409 naming the field (unique) or the relation (restrict)."""
    text = str(exc)
    if "UNIQUE" in text.upper() or "duplicate key" in text:
        names = _unique_fields(spec, text)
        label = ", ".join(names) or "a unique field"
        details = {name: ["Value must be unique."] for name in names} or {"record": ["Value must be unique."]}
        return AlyxError("conflict", f"Another record in {spec.name!r} already has this {label}.", 409, details)
    if "FOREIGN KEY" in text.upper() or "foreign key" in text:
        return AlyxError("conflict", f"The record is still referenced by other records ({text.splitlines()[0]}).",
                         409)
    return AlyxError("conflict", "The write conflicts with a database constraint.", 409)


def _unique_fields(spec: CollectionSpec, text: str) -> list[str]:
    match = re.search(r"UNIQUE constraint failed: (.+)", text)
    if match:
        return [part.split(".")[-1].strip() for part in match.group(1).split(",")]
    match = re.search(r'unique constraint "([^"]+)"', text)
    if match:
        from alyx.models import index_definitions

        for idx_name, cols, _ in index_definitions(spec):
            if idx_name == match.group(1):
                return list(cols)
        if match.group(1).endswith("_pkey"):
            return ["id"]
    return []
