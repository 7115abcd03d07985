"""schema.yaml → validated CollectionSpec/FieldSpec, with errors that name the line and the key."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alyx.fields.base import FieldSpec as FieldSpec
from alyx.fields.base import SettingsProblem
from alyx.fields.registry import FIELD_TYPES as FIELD_TYPES
from alyx.fields.registry import OPTIONS, accepting, lookup
from alyx.yamlfile import Located, Reader, describe, load_yaml

SYSTEM_FIELDS = ("id", "created_at", "updated_at")
AUTH_FIELDS = ("email", "password_hash", "role", "verified")
RULE_OPERATIONS = ("list", "view", "create", "update", "delete")
RESERVED_FIELD_NAMES = set(SYSTEM_FIELDS) | {"expand", "password", "collection"}
CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
                "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}

_COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD_KEYS = {"name", "type", "required", "unique", "default", "index", "renamed_from", "hidden"} | OPTIONS
COMMON_OPTIONS = frozenset({"min", "max", "pattern", "values", "collection", "on_delete"})
_COLLECTION_KEYS = {"name", "fields", "indexes", "rules", "auth"}
_INDEX_KEYS = {"fields", "unique", "name"}


@dataclass(frozen=True)
class IndexSpec:
    """A (possibly composite) index declared under ``indexes:``."""

    fields: tuple[str, ...]
    unique: bool = False
    name: str = ""


@dataclass(frozen=True)
class CollectionSpec:
    """A collection: its fields, extra indexes and CEL rules (None = admins only)."""

    name: str
    fields: tuple[FieldSpec, ...]
    indexes: tuple[IndexSpec, ...] = ()
    rules: dict[str, str | None] = field(default_factory=dict)
    auth: bool = False

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    # Cached (a spec is frozen): every record write asks for them, some more than once.
    @functools.cached_property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @functools.cached_property
    def public_fields(self) -> tuple[FieldSpec, ...]:
        """Fields a client may see and send (hidden ones, like password hashes, excluded)."""
        return tuple(f for f in self.fields if not f.hidden)

    @functools.cached_property
    def file_fields(self) -> tuple[FieldSpec, ...]:
        """Its fields of type ``file`` (alyx/record_files.py plans their writes)."""
        return tuple(f for f in self.public_fields if f.type == "file")


@dataclass(frozen=True)
class Schema:
    """All collections, in declaration order (relations may point forwards)."""

    collections: dict[str, CollectionSpec]

    def get(self, name: str) -> CollectionSpec | None:
        return self.collections.get(name)


def default_auth_fields() -> tuple[FieldSpec, ...]:
    """The fields every auth collection has before the user's own."""
    return (
        FieldSpec("email", "email", required=True, unique=True, max=254),
        FieldSpec("password_hash", "string", hidden=True),
        # required: omitted, they take their default; null is refused (a user always has a role).
        FieldSpec("role", "select", values=("user", "admin"), default="user", required=True),
        FieldSpec("verified", "bool", default=False, required=True),
    )


# What a schema may say about a field the auth collection already has (the upstream quick start
# declares `email` on `users`): the same field, or a stricter one; never one that contradicts it.
_AUTH_COMPATIBLE = {
    "email": "type email or string, required and unique (max at most 254; min and pattern may narrow it)",
    "role": "type select with values that include user and admin",
    "verified": "type bool with default false",
}


def auth_field_conflict(builtin: FieldSpec, declared: FieldSpec, raw: Any) -> str | None:
    """Why ``declared`` cannot stand for the auth collection's own field ``builtin`` (None: it can)."""
    name = builtin.name
    expected = _AUTH_COMPATIBLE.get(name)
    if expected is None:
        return f"field {name!r} is managed by Alyx (the auth collection stores it) and cannot be declared"
    explicit_false = [key for key in ("required", "unique") if isinstance(raw, dict) and raw.get(key) is False]
    wrong = (
        (name == "email" and (declared.type not in ("email", "string") or explicit_false
                              or (declared.max is not None and declared.max > 254) or declared.default is not None))
        or (name == "role" and (declared.type != "select" or not {"user", "admin"} <= set(declared.values)))
        or (name == "verified" and (declared.type != "bool" or declared.default not in (None, False)))
        or declared.hidden or declared.renamed_from is not None
    )
    if not wrong:
        return None
    return (f"field {name!r} is one the auth collection has already; a declaration must stay compatible with it: "
            f"{expected}")


def merge_auth_field(builtin: FieldSpec, declared: FieldSpec) -> FieldSpec:
    """The auth field with what a compatible declaration adds (narrower bounds, pattern, values, index)."""
    if builtin.name == "email":
        return dataclasses.replace(builtin, min=declared.min, max=declared.max or builtin.max,
                                   pattern=declared.pattern, index=declared.index)
    if builtin.name == "role":
        return dataclasses.replace(builtin, values=declared.values, default=declared.default or builtin.default,
                                   index=declared.index)
    return dataclasses.replace(builtin, index=declared.index)


def parse_schema(text: str, path: str = "schema.yaml") -> Schema:
    """Parse and validate schema text; raise ConfigError naming line, key and expectation."""
    data = load_yaml(text, path)
    reader = Reader(path)
    if data is None:
        data = Located(collections=[])
    top = reader.mapping(data, "top level", {"collections"})
    raw_collections = reader.get(top, "collections", "top level", (list,), default=[]) or []
    collections: dict[str, CollectionSpec] = {}
    for i, raw in enumerate(raw_collections):
        spec = _parse_collection(reader, raw, f"collections[{i}]", top)
        if spec.name in collections:
            reader.fail(raw, f"collections[{i}].name", f"collection {spec.name!r} is declared twice", key="name")
        collections[spec.name] = spec
    if "users" not in collections:
        collections["users"] = CollectionSpec("users", default_auth_fields(), auth=True)
    _check_references(reader, collections, raw_collections)
    return Schema(collections)


def load_schema(path: Path) -> Schema:
    """Read schema.yaml; a missing file is an empty schema (only the users collection)."""
    if not path.exists():
        return parse_schema("", str(path))
    return parse_schema(path.read_text(encoding="utf-8"), str(path))


def _named(reader: Reader, raw: Any, where: str, allowed: set[str], parent: Any, what: str,
           pattern: re.Pattern[str]) -> tuple[Any, str]:
    """The mapping of a collection or a field, and its name, checked against ``pattern``."""
    node = reader.mapping(raw, where, allowed, parent)
    name = reader.get(node, "name", where, (str,), required=True)
    if not pattern.match(name):
        reader.fail(node, f"{where}.name",
                    f"invalid {what} name {name!r} (lowercase letters, digits and _, starting with a letter)",
                    key="name")
    return node, name


def _parse_collection(reader: Reader, raw: Any, where: str, parent: Any) -> CollectionSpec:
    node, name = _named(reader, raw, where, _COLLECTION_KEYS, parent, "collection", _COLLECTION_NAME)
    where = f"collection {name!r}"
    is_auth = reader.get(node, "auth", where, (bool,), default=False)
    if is_auth and name != "users":
        reader.fail(node, f"{where}.auth", "only the 'users' collection can be the auth collection", key="auth")
    if name == "users":
        is_auth = True
    raw_fields = reader.get(node, "fields", where, (list,), default=[]) or []
    fields: list[FieldSpec] = list(default_auth_fields()) if is_auth else []
    declared: set[str] = set()
    for i, raw_field in enumerate(raw_fields):
        f = _parse_field(reader, raw_field, f"{where}.fields[{i}]", node)
        builtin = next((existing for existing in fields if existing.name == f.name), None)
        if builtin is not None and is_auth and f.name in AUTH_FIELDS and f.name not in declared:
            problem = auth_field_conflict(builtin, f, raw_field)
            if problem:
                reader.fail(raw_field, f"{where}.fields[{i}]", problem, key="name")
            fields[fields.index(builtin)] = merge_auth_field(builtin, f)
        elif builtin is not None:
            reader.fail(raw_field, f"{where}.fields[{i}].name", f"field {f.name!r} is declared twice", key="name")
        else:
            fields.append(f)
        declared.add(f.name)
    indexes: list[IndexSpec] = []
    for i, raw_index in enumerate(reader.get(node, "indexes", where, (list,), default=[]) or []):
        iwhere = f"{where}.indexes[{i}]"
        inode = reader.mapping(raw_index, iwhere, _INDEX_KEYS, node)
        cols = reader.get(inode, "fields", iwhere, (list,), required=True)
        names = {f.name for f in fields} | set(SYSTEM_FIELDS)
        if not cols or not all(isinstance(c, str) for c in cols):
            reader.fail(inode, f"{iwhere}.fields", "expected a non-empty list of field names", key="fields")
        for c in cols:
            if c not in names:
                reader.fail(inode, f"{iwhere}.fields", f"unknown field {c!r}", key="fields")
        unique = reader.get(inode, "unique", iwhere, (bool,), default=False)
        iname = reader.get(inode, "name", iwhere, (str,), default=None) or _index_name(name, cols, unique)
        if not _FIELD_NAME.match(iname):
            reader.fail(inode, f"{iwhere}.name", f"invalid index name {iname!r} (lowercase letters, digits and _)",
                        key="name")
        taken = {i.name for i in indexes} | {_index_name(name, ["created_at"], False)} | {
            _index_name(name, [f.name], f.unique) for f in fields
            if f.unique or f.index or lookup(f.type).always_indexed}
        if iname in taken:
            reader.fail(inode, iwhere, f"index {iname!r} is declared twice (as a field option or an index); "
                        "remove one or give this one another 'name'")
        indexes.append(IndexSpec(tuple(cols), unique, iname))
    rules: dict[str, str | None] = {op: None for op in RULE_OPERATIONS}
    raw_rules = reader.get(node, "rules", where, (dict,), default={}) or {}
    rules_node = reader.mapping(raw_rules, f"{where}.rules", set(RULE_OPERATIONS), node)
    for op in RULE_OPERATIONS:
        value = rules_node.get(op)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str) or not value.strip():
            reader.fail(rules_node, f"{where}.rules.{op}", f"expected a CEL expression string, got {describe(value)}",
                        key=op)
        rules[op] = value.strip()
    return CollectionSpec(name, tuple(fields), tuple(indexes), rules, is_auth)


def _index_name(collection: str, cols: list[str] | tuple[str, ...], unique: bool) -> str:
    return f"{'uq' if unique else 'idx'}_{collection}_{'_'.join(cols)}"


def _parse_field(reader: Reader, raw: Any, where: str, parent: Any) -> FieldSpec:
    node, name = _named(reader, raw, where, _FIELD_KEYS, parent, "field", _FIELD_NAME)
    if name in RESERVED_FIELD_NAMES:
        reader.fail(node, f"{where}.name", f"{name!r} is reserved (system fields: id, created_at, updated_at)",
                    key="name")
    if name in CEL_RESERVED:
        reader.fail(node, f"{where}.name", f"{name!r} is a reserved word of filters and rules; choose another name",
                    key="name")
    where = f"{where} ({name})"
    ftype = reader.get(node, "type", where, (str,), required=True)
    if ftype not in FIELD_TYPES:
        reader.fail(node, f"{where}.type", f"unknown type {ftype!r}; expected one of: {', '.join(FIELD_TYPES)}",
                    key="type")
    kind = lookup(ftype)
    required = reader.get(node, "required", where, (bool,), default=False)
    unique = reader.get(node, "unique", where, (bool,), default=False)
    index = reader.get(node, "index", where, (bool,), default=False)
    hidden = reader.get(node, "hidden", where, (bool,), default=False)
    settings: dict[str, Any] = {}  # the type's settings read so far, for kind.settings_problem
    minimum = settings["min"] = reader.get(node, "min", where, (int, float), default=None)
    maximum = settings["max"] = reader.get(node, "max", where, (int, float), default=None)
    if minimum is not None and maximum is not None and minimum > maximum:
        reader.fail(node, f"{where}.min", f"min ({minimum}) is greater than max ({maximum})", key="min")
    if (minimum is not None and "min" not in kind.options) or (maximum is not None and "max" not in kind.options):
        reader.fail(node, f"{where}.min", f"min/max do not apply to {ftype} fields",
                    key="min" if minimum is not None else "max")
    for key, bound in (("min", minimum), ("max", maximum)):
        if bound is not None and kind.length_bounds and (not isinstance(bound, int) or bound < 0):
            reader.fail(node, f"{where}.{key}", f"expected a length (a whole number >= 0), got {bound!r}", key=key)
    pattern = settings["pattern"] = reader.get(node, "pattern", where, (str,), default=None)
    if pattern is not None:
        if "pattern" not in kind.options:
            reader.fail(node, f"{where}.pattern", f"pattern does not apply to {ftype} fields", key="pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            reader.fail(node, f"{where}.pattern", f"invalid regular expression: {exc}", key="pattern")
    values = settings["values"] = reader.get(node, "values", where, (list,), default=None)
    if "values" in kind.options:
        _check_settings(reader, node, where, kind.settings_problem(settings))
    elif values is not None:
        reader.fail(node, f"{where}.values", f"values only apply to {_types_accepting('values')} fields",
                    key="values")
    collection = settings["collection"] = reader.get(node, "collection", where, (str,), default=None)
    on_delete = reader.get(node, "on_delete", where, (str,), default="set_null")
    if "on_delete" in node:
        settings["on_delete"] = on_delete
    if "collection" in kind.options:
        _check_settings(reader, node, where, kind.settings_problem(settings))
    elif collection is not None or "on_delete" in node:
        reader.fail(node, f"{where}.collection", f"collection/on_delete only apply to {_types_accepting('collection')}"
                    " fields", key="collection" if collection is not None else "on_delete")
    for key in sorted((OPTIONS - COMMON_OPTIONS - kind.options) & set(node)):
        reader.fail(node, f"{where}.{key}", f"{key} only applies to {_types_accepting(key)} fields", key=key)
    own = {key: node[key] for key in kind.options - COMMON_OPTIONS if key in node}
    if kind.options - COMMON_OPTIONS:
        _check_settings(reader, node, where, kind.settings_problem(own))
    renamed_from = reader.get(node, "renamed_from", where, (str,), default=None)
    spec = FieldSpec(name, ftype, required, unique, None, index, minimum, maximum, pattern,
                     tuple(values or ()), collection, on_delete, renamed_from, hidden, kind.own_settings(own))
    if "default" in node and node["default"] is not None:
        default = node["default"]
        if isinstance(default, (dt.date, dt.datetime)):  # unquoted YAML dates: kept in their JSON form
            default = default.isoformat()
        problem = kind.default_problem(spec, default)
        if problem:
            reader.fail(node, f"{where}.default", problem, key="default")
        spec = FieldSpec(**{**spec.__dict__, "default": default})
    return spec


def _types_accepting(option: str) -> str:
    return " and ".join(accepting(option))


def _check_settings(reader: Reader, node: Any, where: str, problem: SettingsProblem | None) -> None:
    if problem is not None:
        reader.fail(node, f"{where}{problem.where}", problem.message, key=problem.key)


def _check_references(reader: Reader, collections: dict[str, CollectionSpec], raw: list[Any]) -> None:
    def node_of(collection: str, field_name: str) -> Any:
        """The YAML mapping of a field (for its line), else that of its collection."""
        node = next((r for r in raw if isinstance(r, dict) and r.get("name") == collection), None)
        fields = node.get("fields") if node is not None else None
        return next((f for f in fields or () if isinstance(f, dict) and f.get("name") == field_name), node)

    for spec in collections.values():
        for f in spec.fields:
            if f.collection is not None and f.collection not in collections:
                reader.fail(node_of(spec.name, f.name), f"collection {spec.name!r}.field {f.name!r}.collection",
                            f"relation to unknown collection {f.collection!r} (declared collections: "
                            f"{', '.join(sorted(collections))})", key="collection")
            if f.collection is not None and f.on_delete == "set_null" and f.required:
                reader.fail(node_of(spec.name, f.name), f"collection {spec.name!r}.field {f.name!r}",
                            "a required relation cannot use on_delete: set_null (use cascade or restrict)")
    _check_cycles(reader, collections)


def _check_cycles(reader: Reader, collections: dict[str, CollectionSpec]) -> None:
    """Relations between different collections must not form a cycle (tables are created in order)."""
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(trail[trail.index(name):] + [name])
            reader.fail(None, "relations", f"relations form a cycle ({cycle}); break it by removing one relation")
        state[name] = 1
        for f in collections[name].fields:
            if f.collection is not None and f.collection != name:
                visit(f.collection, trail + [name])
        state[name] = 2

    for name in collections:
        visit(name, [])


def creation_order(schema: Schema) -> list[CollectionSpec]:
    """Collections ordered so every relation target comes before the collection pointing at it."""
    ordered: list[CollectionSpec] = []
    done: set[str] = set()

    def visit(spec: CollectionSpec) -> None:
        if spec.name in done:
            return
        done.add(spec.name)
        for f in spec.fields:
            if f.collection is not None and f.collection != spec.name:
                visit(schema.collections[f.collection])
        ordered.append(spec)

    for spec in schema.collections.values():
        visit(spec)
    return ordered
