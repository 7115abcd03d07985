"""The records service: the one read and write path (validate → rule → write → change event).

Every later feature plugs in here: rules decide, hooks and realtime subscribe to change events,
which are published only after the write transaction commits.
"""
from __future__ import annotations

import builtins
import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import peewee
from marshmallow import ValidationError

from alyx import query as q
from alyx.clock import utcnow
from alyx.collection import Collection
from alyx.conflicts import WriteTransaction
from alyx.db import Database, dict_row, dict_rows
from alyx.errors import AlyxError, bad_request, not_found, validation_failed
from alyx.list_plans import PagePlans, plan_key, plan_page, run_plan
from alyx.models import new_id
from alyx.record_files import FileInput, FilePlan, RecordFiles, blobs_written, check_files_unchanged
from alyx.rules import AccessRules, Principal, RequestInfo
from alyx.schema import Schema
from alyx.validation import RECORD_ID

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
AUTH_ADMIN_FIELDS = frozenset({"role", "verified"})


def normalize_email(email: str) -> str:
    """The one form an auth record's email is stored, looked up and compared in: trimmed, lower-case."""
    return email.strip().lower()


@dataclass(frozen=True)
class ChangeEvent:
    """A committed change to one record (published after commit, never for a rollback)."""

    collection: str
    action: str  # create | update | delete
    record: dict[str, Any]
    previous: dict[str, Any] | None = None
    writer: Principal | None = None  # who made the write (None: anonymous); database hooks run as them


Listener = Callable[[ChangeEvent], None]
# A guard sees a write before its transaction: (collection, action, document, previous, writer) → fields to
# change (or None); it refuses the write by raising AlyxError. Database hooks with mode: sync are guards.
Guard = Callable[[str, str, dict[str, Any], "dict[str, Any] | None", "Principal | None"], "Mapping[str, Any] | None"]
GuardFilter = Callable[[str, str], bool]
Matched = list[tuple[dict[str, Any], dict[str, Any]]]  # a bulk write's records, each with its guards' changes


@dataclass
class GuardsAhead:
    """Guards run ahead of a batch's transaction (alyx/batch.py): a write given one without ``changes`` runs its
    guards, keeps their changes and stops before writing; given it again, it applies them instead."""

    changes: dict[str, Any] | None = None


class Records:
    """List, view, create, update and delete records, with rules applied and changes published."""

    def __init__(self, db: Database, schema: Schema, models: Mapping[str, type[peewee.Model]],
                 access: AccessRules, default_per_page: int = 30, max_per_page: int = 500,
                 files: RecordFiles | None = None) -> None:
        self.db = db
        self.schema = schema
        self.access = access
        self.collections = {name: Collection(schema.collections[name], model) for name, model in models.items()}
        self.default_per_page = default_per_page
        self.max_per_page = max_per_page
        self.listeners: builtins.list[Listener] = []
        self.guards: builtins.list[tuple[Guard, GuardFilter]] = []
        self.journal_writers: builtins.list[Listener] = []
        self.begins: builtins.list[Callable[[], None]] = []
        self.files = files  # file fields (alyx/record_files.py); None: no storage configured
        self.plans = PagePlans()  # prepared list SQL per request shape

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

    def on_begin(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` first in every write transaction, before any row is written (its locks come first)."""
        self.begins.append(callback)

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
        key = plan_key(self.access, coll.spec.name, lq, operations, auth)
        plan = self.plans.get(key)
        if plan is not None:  # the same shape was listed before: its SQL text is ready (alyx/list_plans.py)
            return run_plan(self.db.peewee, plan, lq)
        conditions = q.compile_where(lq, coll.spec, coll.model, not self.db.is_sqlite)
        tests: q.RowTests = []
        for op in operations:
            visibility = self.access.visibility(coll.spec.name, op, auth, request)
            if visibility.sql is not None:
                conditions.append(visibility.sql)
            if visibility.test is not None:
                tests.append(visibility.test)
        columns = coll.model._meta.sorted_fields if tests else coll.columns(lq.fields, lq.expand)
        if key is not None and not tests:
            plan = self.plans.put(key, plan_page(self.db.peewee, coll.model, columns, lq, conditions,
                                                 self.db.is_sqlite))
            return run_plan(self.db.peewee, plan, lq)
        return q.select_page(coll.model, columns, lq, conditions, tests, self.db.is_sqlite)

    def view(self, name: str, record_id: str, args: Mapping[str, str] | None = None,
             auth: Principal | None = None, request: RequestInfo | None = None) -> dict[str, Any]:
        """One record, or 404 when it does not exist or the view rule hides it."""
        coll = self.collection(name)
        args = args or {}
        fields = q.parse_fields(coll.spec, args.get("fields"))
        expand = q.parse_expand(coll.spec, args.get("expand"))
        if not expand:  # the record is only shown: read straight into its JSON form
            return self._fetch(coll, record_id, "view", auth, request, coll.columns(fields), as_json=True)
        row = self._fetch(coll, record_id, "view", auth, request, coll.columns(fields, expand))
        item = coll.serialize(row, fields)
        self._expand(coll, [row], [item], expand, auth, request)
        return item

    def view_unchecked(self, name: str, record_id: str) -> dict[str, Any]:
        """One record without rules, for server-side services that already decided (GET /api/auth/me)."""
        coll = self.collection(name)
        return self._fetch(coll, record_id, "view", None, None, coll.visible_columns, admin=True, as_json=True)

    def validate(self, name: str, body: Any, partial: bool = False) -> dict[str, Any]:
        """The body validated as a create (or partial update) of ``name``, without writing (422 if invalid)."""
        return self._load(self.collection(name), body, partial)

    def _fetch(self, coll: Collection, record_id: str, op: str, auth: Principal | None,
               request: RequestInfo | None, columns: builtins.list[peewee.Field] | None = None, admin: bool = False,
               as_json: bool = False) -> dict[str, Any]:
        """The stored record ``op`` lets ``auth`` see (404 otherwise); ``as_json``: shown, as
        ``serialize(row, names of columns)`` would show it (``columns`` then names visible fields)."""
        if not RECORD_ID.fullmatch(record_id):  # never stored; and PostgreSQL refuses NUL characters
            raise not_found(f"Record {record_id[:40]!r} not found in {coll.spec.name!r}.")
        visibility = None if admin else self.access.visibility(coll.spec.name, op, auth, request)
        wanted = columns
        if visibility is not None and visibility.test is not None:
            columns = None  # the per-record test needs every field
        if visibility is None or (visibility.sql is None and visibility.test is None):
            row = coll.fetch_by_id(self.db.peewee, record_id, columns or coll.model._meta.sorted_fields, as_json)
        elif visibility.test is None and visibility.sql is not None and not self.access.rule(coll.spec.name,
                                                                                               op).reads_request:
            columns = columns or coll.model._meta.sorted_fields
            row = coll.fetch_by_id_where(self.db.peewee, record_id, columns, visibility.sql,
                                         (op, auth, tuple(c.name for c in columns)), as_json)
        else:
            query = coll.model.select(*(columns or coll.model._meta.sorted_fields)).where(coll.id_column == record_id)
            if visibility.sql is not None:
                query = query.where(visibility.sql)
            row = dict_row(query)
            if row is not None and visibility.test is not None and not visibility.test(row):
                row = None
            if row is not None and as_json:
                row = coll.serialize(row, tuple(c.name for c in wanted) if wanted else None)
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
               *, server_values: Mapping[str, Any] | None = None, check_rule: bool = True,
               files: FileInput | None = None, ahead: GuardsAhead | None = None) -> dict[str, Any]:
        """Validate, check the create rule, insert; 201-ready record (``files``: uploads, see record_files).

        ``server_values`` and ``check_rule`` are for server-side services only (the auth service
        setting a password hash or an admin's role); no HTTP input ever reaches them.
        """
        coll = self.collection(name)
        data = self._load(coll, body, partial=False)
        if coll.spec.auth and "id" in data:  # a chosen id could inherit a deleted user's grants
            raise validation_failed({"id": [f"Ids of {name!r} records are made by the server."]})
        self._check_auth_fields(coll, data, auth)
        _normalize_auth(coll, data)
        now = utcnow()
        record = {**coll.fresh_defaults(), **data, **(server_values or {})}
        record["id"] = data.get("id") or new_id()
        record["created_at"] = record["updated_at"] = now
        plan = self._plan_files(coll, record["id"], data, files, None)
        if plan is not None:
            record.update(plan.values)
        if check_rule and not self.access.allows(name, "create", auth, record, request):
            raise AlyxError("forbidden", f"You are not allowed to create records in {name!r}.", 403)
        changes = self._guarded(coll, "create", record, None, auth, ahead)
        if changes is None:
            return record  # guards run ahead of a batch: the write comes later
        if _normalize_auth(coll, changes):
            record.update(changes)
            data.update(changes)
        with blobs_written(plan), self._write(coll):
            self._check_relations(coll, data)
            self.db.insert(coll.model, record)
            created = coll.serialize(record)
            self._publish(ChangeEvent(name, "create", created, writer=auth))
            self._after_commit(plan)
        return created

    def update(self, name: str, record_id: str, body: Any, auth: Principal | None = None,
               request: RequestInfo | None = None, *, server_values: Mapping[str, Any] | None = None,
               check_rule: bool = True, files: FileInput | None = None, ahead: GuardsAhead | None = None
               ) -> dict[str, Any]:
        """Partial update: 404 if hidden, 403 if the update rule refuses (see create for the keywords)."""
        coll = self.collection(name)
        data = self._load(coll, body, partial=True)
        if "id" in data and data["id"] != record_id:
            raise validation_failed({"id": ["The id of a record cannot be changed."]})
        data.pop("id", None)
        self._check_auth_fields(coll, data, auth)
        _normalize_auth(coll, data)
        plan, planned_from = None, None
        if files is not None or self._has_files(coll):  # blobs are written before the transaction
            planned_from = (self._fetch_writable(coll, record_id, "update", auth, request) if check_rule
                            else self._fetch(coll, record_id, "view", None, request, admin=True))
            plan = self._plan_files(coll, record_id, data, files, planned_from)
        if ahead is not None or self._guards_for(name, "update"):
            before = (self._fetch_writable(coll, record_id, "update", auth, request) if check_rule
                      else self._fetch(coll, record_id, "view", None, request, admin=True))
            changes = self._guarded(coll, "update", {**before, **data, **(server_values or {})}, before, auth,
                                    ahead)
            if changes is None:
                return before
            data.update(_normalize_auth(coll, changes))
        with blobs_written(plan), self._write(coll):
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
            if plan is not None and planned_from is not None:
                check_files_unchanged(coll.spec, planned_from, stored)
            coll.model.update(data).where(coll.id_column == record_id).execute()
            record = {**stored, **data}
            self._publish(ChangeEvent(name, "update", coll.serialize(record), coll.serialize(stored), writer=auth))
            self._after_commit(plan)
        return coll.serialize(record)

    def delete(self, name: str, record_id: str, auth: Principal | None = None,
               request: RequestInfo | None = None, ahead: GuardsAhead | None = None) -> None:
        """Delete: 404 if hidden, 403 if the delete rule refuses, 409 if a restrict relation holds it."""
        coll = self.collection(name)
        if (ahead is not None or self._guards_for(name, "delete")) and self._guarded(
                coll, "delete", self._fetch_writable(coll, record_id, "delete", auth, request), None, auth,
                ahead) is None:
            return
        with self._write(coll):
            stored = self._fetch_writable(coll, record_id, "delete", auth, request)
            coll.model.delete().where(coll.id_column == record_id).execute()
            self._publish(ChangeEvent(name, "delete", coll.serialize(stored), writer=auth))
            if self.files is not None:
                self._after_commit(self.files.deleted(coll.spec, stored))

    # -- file fields (alyx/record_files.py) --------------------------------------------------------
    def _has_files(self, coll: Collection) -> bool:
        return self.files is not None and bool(coll.spec.file_fields)

    def _plan_files(self, coll: Collection, record_id: str, data: dict[str, Any], files: FileInput | None,
                    stored: Mapping[str, Any] | None) -> FilePlan | None:
        """The write's file names put into ``data``, and the blobs to write and delete."""
        if self.files is None:
            if files is not None and (files.uploads or files.removals):
                raise AlyxError("storage_unavailable", "File uploads need a storage backend.", 500)
            return None
        return self.files.plan(coll.spec, record_id, data, files, stored)

    def _after_commit(self, plan: FilePlan | None) -> None:
        """Delete replaced and removed blobs once the outer transaction commits (never on rollback)."""
        if plan is not None and plan.deletes:
            self.db.after_commit(plan.finish)

    # -- bulk writes: update()/delete() of every matching record, in one transaction --------------
    def update_many(self, name: str, where: Any, body: Any, auth: Principal | None = None,
                    request: RequestInfo | None = None) -> int:
        """One partial update of every record ``where`` matches and the caller may update; how many."""
        coll = self.collection(name)
        data = self._load(coll, body, partial=True)
        if not data or "id" in data:
            raise validation_failed({"changes": ["Name at least one field to change (never the id)."]})
        self._check_auth_fields(coll, data, auth)
        with self._bulk(coll, where, "update", auth, request, data) as matched:
            now = utcnow()
            for stored, extra in matched:
                changes = {**data, **extra, "updated_at": now}
                if coll.spec.auth and changes.get("email", stored.get("email")) != stored.get("email") \
                        and not (auth is not None and auth.is_admin):
                    changes["verified"] = False  # as in update(): a new address is not verified
                plan = self._plan_files(coll, stored["id"], changes, None, stored)  # JSON: keep or drop names
                coll.model.update(changes).where(coll.id_column == stored["id"]).execute()
                self._publish(ChangeEvent(name, "update", coll.serialize({**stored, **changes}),
                                          coll.serialize(stored), writer=auth))
                self._after_commit(plan)
        return len(matched)

    def delete_many(self, name: str, where: Any, auth: Principal | None = None,
                    request: RequestInfo | None = None) -> int:
        """Delete every record ``where`` matches and the caller may delete; how many (409: all or none)."""
        coll = self.collection(name)
        with self._bulk(coll, where, "delete", auth, request) as matched:
            ids = [row["id"] for row, _ in matched]
            for start in range(0, len(ids), 500):
                coll.model.delete().where(coll.id_column.in_(ids[start:start + 500])).execute()
            for row, _ in matched:
                self._publish(ChangeEvent(name, "delete", coll.serialize(row), writer=auth))
                if self.files is not None:  # as delete(): the record's blobs go after the commit
                    self._after_commit(self.files.deleted(coll.spec, row))
        return len(matched)

    @contextlib.contextmanager
    def _bulk(self, coll: Collection, where: Any, op: str, auth: Principal | None, request: RequestInfo | None,
              data: dict[str, Any] | None = None) -> Iterator[Matched]:
        """A bulk write's transaction and records: those the filter (required) matches and the view and
        ``op`` rules allow (the others are left alone, as a list hides them), each with what the guards
        (sync hooks, run per record before the transaction; any may refuse it all) change in it.
        Records that start matching after the guards ran were never guarded and are not written."""
        node = q.parse_filter(coll.spec, where)
        if node is None:
            raise bad_request('A bulk write needs a filter ("true" matches every record).', {"filter": ["required"]})

        def matching() -> Any:
            return self.page(coll, q.every_match(node), auth, request, ("view", op)).rows

        guarded: dict[str, dict[str, Any]] | None = None
        if self._guards_for(coll.spec.name, op):
            guarded = {row["id"]: self._run_guards(coll, op, {**row, **(data or {})}, row if data else None, auth)
                       for row in matching()}
        with self._write(coll):
            matched = [(row, (guarded or {}).get(row["id"], {})) for row in matching()
                       if guarded is None or row["id"] in guarded]
            for changes in [data or {}, *(extra for _, extra in matched if extra)]:
                self._check_relations(coll, changes)
            yield matched

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

    def guarded(self, name: str, action: str) -> bool:
        """Whether guards (sync hooks) run before ``action`` writes of ``name``."""
        return bool(self._guards_for(name, action))

    def _guards_for(self, name: str, action: str) -> builtins.list[Guard]:
        return [check for check, applies in self.guards if applies(name, action)]

    def _guarded(self, coll: Collection, action: str, document: dict[str, Any], previous: dict[str, Any] | None,
                 writer: Principal | None, ahead: GuardsAhead | None) -> dict[str, Any] | None:
        """The guards' changes to a write; None when they have just run ahead of a batch's transaction (stop)."""
        if ahead is not None and ahead.changes is not None:
            return ahead.changes
        changes = self._run_guards(coll, action, document, previous, writer)
        if ahead is not None:
            ahead.changes = changes
        return changes if ahead is None else None

    def _run_guards(self, coll: Collection, action: str, document: dict[str, Any],
                    previous: dict[str, Any] | None, writer: Principal | None) -> dict[str, Any]:
        """Run the guards of a write; the fields they change are validated like a partial update."""
        checks = self._guards_for(coll.spec.name, action)
        changes: dict[str, Any] = {}
        for check in checks:
            extra = check(coll.spec.name, action, coll.serialize({**document, **changes}),
                          coll.serialize(previous) if previous is not None else None, writer)
            if extra:
                changes.update(extra)
        for system in ("id", "created_at", "updated_at"):
            changes.pop(system, None)
        return self._load(coll, changes, partial=True) if changes and action != "delete" else {}

    def _write(self, coll: Collection) -> Any:
        return WriteTransaction(self.db.write(), coll.spec, self.begins)

    def _publish(self, event: ChangeEvent) -> None:
        for writer in self.journal_writers:
            writer(event)
        if self.listeners:
            self.db.after_commit(lambda: self._deliver(event))

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


def _normalize_auth(coll: Collection, data: dict[str, Any]) -> dict[str, Any]:
    """On the auth collection, the email of every write in its one stored form (``normalize_email``)."""
    if coll.spec.auth and isinstance(data.get("email"), str):
        data["email"] = normalize_email(data["email"])
    return data

