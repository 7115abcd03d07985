"""Diff the live database against the schema → a plan of safe and destructive steps; apply; history."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import peewee
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator

from alyx.db import Database, dict_rows, tuple_rows
from alyx.errors import ConfigError
from alyx.fields.registry import lookup
from alyx.models import ON_DELETE_SQL, SystemModels, email_index_name, index_definitions
from alyx.schema import CollectionSpec, FieldSpec, Schema, creation_order
from alyx.validation import default_value

SYSTEM_COLUMNS = ("id", "created_at", "updated_at")


@dataclass
class Step:
    """One change to the database; destructive steps can lose data and need explicit consent."""

    collection: str
    action: str
    detail: str
    destructive: bool
    run: Callable[[], None] = field(repr=False, compare=False)

    def describe(self) -> str:
        mark = "DESTRUCTIVE" if self.destructive else "safe"
        return f"[{mark}] {self.collection}: {self.detail}"


@dataclass
class Plan:
    steps: list[Step]

    @property
    def destructive(self) -> list[Step]:
        return [s for s in self.steps if s.destructive]

    @property
    def safe(self) -> list[Step]:
        return [s for s in self.steps if not s.destructive]

    def describe(self) -> str:
        if not self.steps:
            return "The database matches the schema."
        return "\n".join(s.describe() for s in self.steps)


class Migrator:
    """Plans and applies the migration from the live database to a schema."""

    def __init__(self, db: Database, schema: Schema, models: dict[str, type[peewee.Model]],
                 system: SystemModels) -> None:
        self.db = db
        self.pw = db.peewee
        self.schema = schema
        self.models = models
        self.system = system
        self.migrator: SchemaMigrator = (SqliteMigrator(self.pw) if db.is_sqlite else PostgresqlMigrator(self.pw))

    # -- planning -----------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Compare live tables, columns, indexes and recorded field types with the schema.

        Alyx's own tables must exist: run ``apply_system_migrations`` (alyx/system_migrations.py) first.
        """
        tables = set(self.pw.get_tables())
        recorded = {row.name: row for row in self.system.managed_collection.select()}
        steps: list[Step] = []
        for spec in creation_order(self.schema):
            if spec.name not in tables:
                steps.append(self._create_collection(spec))
            else:
                steps.extend(self._diff_collection(spec, recorded.get(spec.name)))
        for name in sorted(set(recorded) - set(self.schema.collections)):
            if name in tables:
                steps.append(Step(name, "drop_collection", f"drop collection {name!r} and all its records", True,
                                  functools.partial(self._drop_table, name)))
        return Plan(steps)

    def _record_types(self, spec: CollectionSpec, recorded: Any = None) -> Callable[[], None]:
        def run() -> None:
            types = json.dumps({f.name: f.type for f in spec.fields})
            if recorded is not None and recorded.field_types == types:
                return  # nothing changed: keep start-up free of writes
            mc = self.system.managed_collection
            mc.insert(name=spec.name, field_types=types).on_conflict(
                conflict_target=[mc.name], update={mc.field_types: types}).execute()
        return run

    def _create_collection(self, spec: CollectionSpec) -> Step:
        model = self.models[spec.name]

        def run() -> None:
            model.create_table(safe=False)
        return Step(spec.name, "create_collection",
                    f"create collection {spec.name!r} ({len(spec.fields)} fields)", False, run)

    def _diff_collection(self, spec: CollectionSpec, recorded: Any) -> list[Step]:
        model = self.models[spec.name]
        table = spec.name
        live_columns = {c.name: c for c in self.pw.get_columns(table)}
        known_types: dict[str, str] = json.loads(recorded.field_types) if recorded and recorded.field_types else {}
        drops_idx: list[Step] = []
        renames: list[Step] = []
        drops: list[Step] = []
        changes: list[Step] = []
        adds: list[Step] = []
        adds_idx: list[Step] = []
        renamed_sources: set[str] = set()
        live_relations = self._relations(table)

        def change_type(f: FieldSpec, old_type: str) -> Step:
            return Step(table, "change_type", f"change type of {f.name!r} from {old_type} to {f.type} "
                        "(values that cannot be converted become null)", True,
                        lambda: self._change_type(model, f, old_type))

        for f in spec.fields:
            if f.name in live_columns:
                old_type = known_types.get(f.name)
                if old_type and old_type != f.type:
                    changes.append(change_type(f, old_type))
                elif f.collection is not None and f.name in live_relations \
                        and live_relations[f.name] != (f.collection, ON_DELETE_SQL[f.on_delete]):
                    old_target, old_rule = live_relations[f.name]
                    retarget = old_target != f.collection
                    detail = (f"point {f.name!r} at {f.collection!r} instead of {old_target!r} (references to missing "
                              "records become null)" if retarget else
                              f"change on_delete of {f.name!r} from {old_rule.lower()} to {f.on_delete}")
                    changes.append(Step(table, "change_relation", detail, retarget,
                                        functools.partial(self._change_type, model, f, "relation")))
                continue
            if f.renamed_from and f.renamed_from in live_columns:
                renamed_sources.add(f.renamed_from)
                renames.append(Step(table, "rename_field", f"rename field {f.renamed_from!r} to {f.name!r}", True,
                                    functools.partial(self._rename_column, table, f.renamed_from, f.name)))
                old_type = known_types.get(f.renamed_from)
                if old_type and old_type != f.type:  # renamed and retyped: converted after the rename
                    changes.append(change_type(f, old_type))
                continue
            adds.append(Step(table, "add_field", f"add field {f.name!r} ({f.type})", False,
                             functools.partial(self._add_column, model, f)))
        for name in live_columns:
            if name in SYSTEM_COLUMNS or name in renamed_sources or spec.field(name):
                continue
            drops.append(Step(table, "drop_field", f"drop field {name!r} and its values", True,
                              functools.partial(self._drop_column, table, name)))
        expected = {name: (cols, unique) for name, cols, unique in index_definitions(spec)}
        live_indexes = {i.name: i for i in self.pw.get_indexes(table)}
        for name, idx in live_indexes.items():
            ours = name.startswith((f"idx_{table}_", f"uq_{table}_")) or name in expected
            if not ours:
                continue
            if name not in expected or (tuple(idx.columns), bool(idx.unique)) != expected[name]:
                drops_idx.append(Step(table, "drop_index", f"drop index {name}", False,
                                      functools.partial(self._drop_index, table, name)))
        for name, (cols, unique) in expected.items():
            live = live_indexes.get(name)
            if live is None or (tuple(live.columns), bool(live.unique)) != (cols, unique):
                kind = "unique index" if unique else "index"
                adds_idx.append(Step(table, "add_index", f"add {kind} {name} on ({', '.join(cols)})", False,
                                     functools.partial(self._add_index, table, name, cols, unique)))
        if spec.auth and email_index_name(table) not in live_indexes:
            adds_idx.append(Step(table, "add_index", f"lower-case stored emails, add unique index "
                                 f"{email_index_name(table)} on (lower(email))", False,
                                 functools.partial(self._add_email_index, table)))
        # Dropping a column needs its indexes gone first; new indexes need their columns.
        return drops_idx + renames + drops + changes + adds + adds_idx

    # -- operations ---------------------------------------------------------------------------
    def _add_column(self, model: type[peewee.Model], spec: FieldSpec) -> None:
        column = model._meta.fields[spec.name]
        self.migrator.add_column(model._meta.table_name, spec.name, column).run()
        if spec.default is not None:
            model.update({column: default_value(spec)}).execute()

    def _drop_column(self, table: str, name: str) -> None:
        if not self.db.is_sqlite:
            self.migrator.drop_column(table, name).run()
            return
        # SQLite's native DROP COLUMN refuses columns inside a foreign-key clause: rebuild the table.
        legacy = any(fk.column == name for fk in self.pw.get_foreign_keys(table))
        self.migrator.drop_column(table, name, legacy=legacy).run()

    def _rename_column(self, table: str, old: str, new: str) -> None:
        self.migrator.rename_column(table, old, new).run()

    def _drop_index(self, table: str, name: str) -> None:
        self.migrator.drop_index(table, name).run()

    def _drop_table(self, name: str) -> None:
        # CASCADE (PostgreSQL): another dropped collection may still point at this one; collections that stay
        # cannot (the schema refuses relations to unknown collections, and dropped fields go first).
        self.db.execute(f"DROP TABLE {_q(name)}" + ("" if self.db.is_sqlite else " CASCADE"))
        self.system.managed_collection.delete().where(self.system.managed_collection.name == name).execute()

    def _add_index(self, table: str, name: str, cols: tuple[str, ...], unique: bool) -> None:
        try:
            with self.pw.atomic():
                self.migrator.add_index(table, cols, unique, name=name).run()
        except peewee.IntegrityError:
            raise ConfigError(
                f"cannot add unique index {name}: collection {table!r} already has duplicate values in "
                f"({', '.join(cols)}); remove the duplicates or drop 'unique' from schema.yaml") from None

    def _add_email_index(self, table: str) -> None:
        """The auth collection's emails stored in their one form, then unique regardless of case; addresses
        that differ only in case (older versions allowed that) stop the migration, each named with its ids."""
        t = _q(table)
        rows = self.db.execute(f"SELECT lower(trim(email)), id FROM {t} WHERE lower(trim(email)) IN (SELECT "
                               f"lower(trim(email)) FROM {t} GROUP BY lower(trim(email)) HAVING COUNT(*) > 1) "
                               "ORDER BY 1, 2").fetchall()
        if rows:
            groups: dict[str, list[str]] = {}
            for email, record_id in rows:
                groups.setdefault(email, []).append(record_id)
            listed = "; ".join(f"{email}: {', '.join(ids)}" for email, ids in groups.items())
            raise ConfigError(f"cannot make {table}.email unique regardless of case: these accounts have addresses "
                              f"that differ only in case ({listed}); change or delete all but one of each, then "
                              "start again")
        self.db.execute(f"UPDATE {t} SET email = lower(trim(email)) WHERE email <> lower(trim(email))")
        self.db.execute(f"CREATE UNIQUE INDEX {_q(email_index_name(table))} ON {t} (lower(email))")

    def _relations(self, table: str) -> dict[str, tuple[str, str]]:
        """The live foreign keys of a table: column → (target table, ON DELETE rule in upper case)."""
        if self.db.is_sqlite:
            rows = [(r[3], r[2], r[6]) for r in self.db.execute(f"PRAGMA foreign_key_list({_q(table)})")]
        else:
            rows = self.db.execute(
                "SELECT kcu.column_name, ccu.table_name, rc.delete_rule"
                " FROM information_schema.referential_constraints rc"
                " JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name"
                "  AND kcu.constraint_schema = rc.constraint_schema"
                " JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.constraint_name"
                "  AND ccu.constraint_schema = rc.constraint_schema"
                " WHERE kcu.table_name = %s AND kcu.table_schema = current_schema()", (table,)).fetchall()
        return {column: (target, rule.upper()) for column, target, rule in rows}

    def _change_type(self, model: type[peewee.Model], spec: FieldSpec, old_type: str) -> None:
        """Recreate a column (new type, or new foreign key), converting the values and keeping its indexes."""
        table = model._meta.table_name
        id_col = model._meta.fields["id"]
        rows = list(self.db.execute(f"SELECT {_q('id')}, {_q(spec.name)} FROM {_q(table)}"))
        live = {i.name for i in self.pw.get_indexes(table)}
        rebuilt = [d for d in index_definitions(self.schema.collections[table]) if spec.name in d[1] and d[0] in live]
        for name, _, _ in rebuilt:
            self.migrator.drop_index(table, name).run()
        self._drop_column(table, spec.name)
        column = model._meta.fields[spec.name]
        self.migrator.add_column(table, spec.name, column).run()
        values = {record_id: convert_value(value, spec.type) for record_id, value in rows}
        if spec.collection is not None:  # a relation: only references to records in the (new) target survive
            target = self.models[spec.collection]
            wanted = list({v for v in values.values() if v is not None})
            found = {r for (r,) in tuple_rows(target.select(target._meta.fields["id"]).where(
                target._meta.fields["id"].in_(wanted)))} if wanted else set()
            values = {k: (v if v in found else None) for k, v in values.items()}
        for record_id, converted in values.items():
            if converted is not None:
                model.update({column: converted}).where(id_col == record_id).execute()
        for name, cols, unique in rebuilt:
            self._add_index(table, name, cols, unique)

    # -- applying -----------------------------------------------------------------------------
    def apply(self, plan: Plan, allow_destructive: bool = False) -> list[Step]:
        """Apply the plan in one transaction; record each step in the history table."""
        if plan.destructive and not allow_destructive:
            raise ConfigError(refusal_message(plan))
        if not plan.steps:
            self._sync_types()
            return []
        with self._foreign_keys_off():
            with self.pw.atomic():
                for step in plan.steps:
                    step.run()
                    self.system.migration_step.create(collection=step.collection, action=step.action,
                                                      detail=step.detail, destructive=step.destructive)
                self._sync_types()
                self._check_foreign_keys()  # inside the transaction: a broken migration is rolled back
        return plan.steps

    def _sync_types(self) -> None:
        recorded = {row.name: row for row in self.system.managed_collection.select()}
        for spec in self.schema.collections.values():
            self._record_types(spec, recorded.get(spec.name))()

    @contextlib.contextmanager
    def _foreign_keys_off(self) -> Iterator[None]:
        """SQLite table rebuilds must not fire ON DELETE CASCADE: foreign keys off (checked before commit)."""
        if not self.db.is_sqlite:
            yield
            return
        self.db.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            self.db.execute("PRAGMA foreign_keys = ON")

    def _check_foreign_keys(self) -> None:
        if self.db.is_sqlite:
            problems = list(self.db.execute("PRAGMA foreign_key_check"))
            if problems:
                raise ConfigError(f"migration left {len(problems)} broken relation(s), e.g. {problems[0]}")

    def history(self) -> list[dict[str, Any]]:
        """Every applied step, oldest first."""
        ms = self.system.migration_step
        return dict_rows(ms.select().order_by(ms.id))


def _q(name: str) -> str:
    """Quote an identifier; names are already restricted to [a-z0-9_] by the schema parser."""
    return '"' + name.replace('"', '""') + '"'


REVIEW_COMMAND = "alyx migrate status"
APPLY_DESTRUCTIVE_COMMAND = "alyx migrate apply --allow-destructive"


def refusal_message(plan: Plan) -> str:
    lines = "\n".join("  " + s.describe() for s in plan.destructive)
    return ("schema.yaml needs destructive changes that are not applied automatically:\n"
            f"{lines}\n"
            f"Review them with `{REVIEW_COMMAND}`, then apply with `{APPLY_DESTRUCTIVE_COMMAND}`.")


def pending_report(plan: Plan) -> dict[str, Any]:
    """A plan as an admin reads it: each pending step, and the commands that apply the destructive ones
    (None when nothing destructive waits: safe steps are applied at the next start)."""
    return {"pending": [{"collection": s.collection, "action": s.action, "detail": s.detail,
                         "destructive": s.destructive} for s in plan.steps],
            "review": REVIEW_COMMAND if plan.destructive else None,
            "command": APPLY_DESTRUCTIVE_COMMAND if plan.destructive else None}


def convert_value(value: Any, target: str) -> Any:
    """Best-effort conversion of a stored value to a new field type; None when it cannot convert."""
    if value is None:
        return None
    try:
        return lookup(target).convert(value)
    except (TypeError, ValueError, OverflowError):
        return None


@contextlib.contextmanager
def migration_lock(db: Database) -> Iterator[None]:
    """One migrator at a time across processes (gunicorn workers, several hosts on PostgreSQL)."""
    if db.is_sqlite:
        lock_path = str(db.peewee.database) + ".migrate.lock"
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = zlib.crc32(b"alyx-migrations")
    db.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        yield
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (key,))
