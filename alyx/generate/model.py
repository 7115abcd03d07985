"""The project as generated clients see it: collections, their fields with types from the field registry, a hash."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from alyx.fields.base import FieldSpec, FieldType
from alyx.fields.registry import lookup
from alyx.schema import AUTH_FIELDS, Schema

#: The collection whose records sign in (alyx/auth.py's USERS).
AUTH_COLLECTION = "users"
#: Fields only admins set, so a registration input leaves them out (alyx/auth.py refuses them).
ADMIN_ONLY = tuple(name for name in AUTH_FIELDS if name != "email")

_SYSTEM = (("id", "record id, 15 characters a-z0-9"),
           ("created_at", "RFC 3339 timestamp in UTC with milliseconds, e.g. 2026-01-02T03:04:05.000Z"),
           ("updated_at", "RFC 3339 timestamp in UTC with milliseconds, e.g. 2026-01-02T03:04:05.000Z"))


@dataclass(frozen=True)
class Field:
    """One field of a record as a client types it."""

    name: str
    kind: FieldType
    required: bool  # never null in a record; a create input must send it unless it has a default
    has_default: bool
    values: tuple[str, ...]  # the only values (select), or ()
    relation: str | None  # the collection a relation points at
    doc: str
    system: bool = False
    is_list: bool = False  # a list of the type's values (a multiple file field)
    upload: bool = False  # names uploaded files: sent apart from the JSON input (FieldType.client_upload)

    @property
    def create_required(self) -> bool:
        return self.required and not self.has_default


@dataclass(frozen=True)
class Collection:
    """A collection: its name, the type-name stem used in every language, its record fields."""

    name: str
    stem: str  # "blog_posts" -> "BlogPosts"
    fields: tuple[Field, ...]  # system fields first, then the public ones in declaration order
    auth: bool

    @property
    def writable(self) -> tuple[Field, ...]:
        """What an update input may send (file fields: names to keep)."""
        return tuple(f for f in self.fields if not f.system)

    @property
    def creatable(self) -> tuple[Field, ...]:
        """What a create input sends as JSON: file fields are uploads (``uploads``), never names."""
        return tuple(f for f in self.writable if not f.upload)

    @property
    def uploads(self) -> tuple[Field, ...]:
        """The fields that take uploaded files."""
        return tuple(f for f in self.fields if f.upload)

    @property
    def relations(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.relation is not None)

    @property
    def registrable(self) -> tuple[Field, ...]:
        """What a sign-up may send besides the password."""
        return tuple(f for f in self.creatable if f.name not in ADMIN_ONLY)


@dataclass(frozen=True)
class Project:
    """Every collection, sorted by name (output does not depend on declaration order), and the schema hash."""

    collections: tuple[Collection, ...]
    schema_hash: str

    def get(self, name: str) -> Collection:
        for coll in self.collections:
            if coll.name == name:
                return coll
        raise KeyError(name)


def stem(name: str) -> str:
    """snake_case → PascalCase, the stem of a collection's type names."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


_SUFFIXES = ("Record", "Expand", "Create", "Update", "Field", "Relation", "Register", "Files")


def values_type(coll: Collection, f: Field) -> str:
    """The type name of a field's fixed values in every language: posts.status -> PostsStatus."""
    name = coll.stem + stem(f.name)
    return name + "Value" if stem(f.name) in _SUFFIXES else name


def collection_opening(coll: Collection, comment: str, declare: Callable[[str, Field], list[str]]) -> list[str]:
    """A collection's section in every language starts so: a banner comment, then one declaration
    (`declare(type name, field)`) per field with fixed values, in field order."""
    out = [f"{comment} ---- {coll.name} ----", ""]
    for f in coll.fields:
        if f.values:
            out += declare(values_type(coll, f), f)
    return out


def _field(spec: FieldSpec) -> Field:
    kind = lookup(spec.type)
    relation = kind.client_relation(spec)
    doc = kind.client_doc or (f"id of a {relation} record" if relation else "")
    return Field(spec.name, kind, spec.required, spec.default is not None, kind.client_values(spec), relation, doc,
                 is_list=kind.client_list(spec), upload=kind.client_upload)


def _system_fields() -> tuple[Field, ...]:
    string = lookup("string")
    return tuple(Field(name, string, True, False, (), None, doc, system=True) for name, doc in _SYSTEM)


def _describe(collections: tuple[Collection, ...]) -> str:
    """The canonical text the hash is taken of: everything that changes generated code."""
    data = [{"name": c.name, "auth": c.auth,
             "fields": [[f.name, f.kind.name, f.required, f.has_default, list(f.values), f.relation, f.is_list]
                        for f in c.fields]} for c in collections]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def project_model(schema: Schema) -> Project:
    """The generator's view of a parsed schema."""
    collections = tuple(
        Collection(spec.name, stem(spec.name), _system_fields() + tuple(_field(f) for f in spec.public_fields),
                   spec.auth)
        for spec in sorted(schema.collections.values(), key=lambda s: s.name))
    digest = hashlib.sha256(_describe(collections).encode()).hexdigest()
    return Project(collections, digest)
