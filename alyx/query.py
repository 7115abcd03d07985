"""List queries: parameters (filter, sort, page, fields, expand, bare equality) → a checked ListQuery → a page.

Every name is checked against the collection before anything reaches peewee; unknown names are
a 400 that names them.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import peewee

from alyx import cel, object_filter
from alyx.errors import AlyxError, bad_request
from alyx.fields.base import FieldType, NoEquality
from alyx.fields.registry import lookup
from alyx.schema import SYSTEM_FIELDS, CollectionSpec

RESERVED_PARAMS = {"filter", "sort", "page", "perPage", "fields", "expand", "skipTotal"}
SYSTEM_TYPES = {"id": "string", "created_at": "datetime", "updated_at": "datetime"}


@dataclass(frozen=True)
class ListQuery:
    """A validated list request."""

    where: list[cel.Node]
    equals: dict[str, Any]
    sort: list[tuple[str, bool]]  # (field, descending)
    page: int
    per_page: int
    fields: tuple[str, ...] | None
    expand: tuple[str, ...]
    skip_total: bool
    filter_source: str | None = None  # the filter as sent (where came from it): prepared lists key on it


def field_type(spec: CollectionSpec, name: str) -> str | None:
    """The Alyx type of a readable field (system fields included), or None when there is none."""
    if name in SYSTEM_TYPES:
        return SYSTEM_TYPES[name]
    f = spec.field(name)
    return f.type if f is not None and not f.hidden else None


def field_kind(spec: CollectionSpec, name: str) -> FieldType | None:
    """The type (alyx/fields/) of a readable field, system fields included, or None when there is none."""
    ftype = field_type(spec, name)
    return None if ftype is None else lookup(ftype)


def readable_fields(spec: CollectionSpec) -> list[str]:
    return list(SYSTEM_FIELDS) + [f.name for f in spec.public_fields]


def unknown_field(spec: CollectionSpec, name: str, param: str) -> AlyxError:
    return bad_request(
        f"Unknown field {name!r} in {param} for collection {spec.name!r}.",
        {param: [f"unknown field {name!r}; known fields: {', '.join(readable_fields(spec))}"]},
    )


def parse_list_query(spec: CollectionSpec, args: Mapping[str, str], default_per_page: int, max_per_page: int,
                     rule_params: frozenset[str] = frozenset()) -> ListQuery:
    """Check and parse the list query string of one collection. ``rule_params`` are the parameters the
    collection's rules read (``request.query.<k>``): those that are not fields are left to the rules."""
    where: list[cel.Node] = []
    node = parse_filter(spec, args.get("filter"))
    if node is not None:
        where.append(node)
    equals: dict[str, Any] = {}
    for key in args:
        if key in RESERVED_PARAMS:
            continue
        if field_type(spec, key) is None:
            if key in rule_params:
                continue
            raise bad_request(f"Unknown query parameter {key!r} for collection {spec.name!r}.",
                              {key: [f"not a field of {spec.name!r} nor a list parameter "
                                     f"({', '.join(sorted(RESERVED_PARAMS))})"]})
        equals[key] = args.get(key)
    sort: list[tuple[str, bool]] = []
    for part in (args.get("sort") or "").split(","):
        part = part.strip()
        if not part:
            continue
        desc = part.startswith("-")
        name = part.lstrip("+-")
        kind = field_kind(spec, name)
        if kind is None or not kind.sortable:
            raise unknown_field(spec, name, "sort")
        sort.append((name, desc))
    page = _positive_int(args, "page", 1)
    per_page = _positive_int(args, "perPage", default_per_page)
    if per_page > max_per_page:
        raise bad_request(f"perPage must be at most {max_per_page}.", {"perPage": [f"maximum is {max_per_page}"]})
    if page > 10_000_000:
        raise bad_request("page is too large.", {"page": ["maximum is 10000000"]})
    fields = None
    if args.get("fields"):
        fields = tuple(dict.fromkeys(f.strip() for f in args["fields"].split(",") if f.strip()))
        for name in fields:
            if field_type(spec, name) is None:
                raise unknown_field(spec, name, "fields")
    expand = parse_expand(spec, args.get("expand"))
    skip_total = _flag(args, "skipTotal")
    source = args.get("filter")
    return ListQuery(where, equals, sort, page, per_page, fields, expand, skip_total,
                     source if isinstance(source, str) else None)


def parse_filter(spec: CollectionSpec, value: Any) -> cel.Node | None:
    """A filter as CEL text or as an object (``{"views": {"$gt": 10}}``, also as JSON text) → one checked node.

    None when there is none ("", null, {}); every name must be a readable field (else 400).
    """
    if value is None or value == "" or value == {}:
        return None
    try:
        if isinstance(value, str) and value.lstrip().startswith("{"):  # no CEL text of this dialect starts so
            try:
                value = json.loads(value)
            except (ValueError, RecursionError) as exc:
                raise cel.CelError(f"the filter looks like a JSON object but does not parse ({exc})") from None
            if value == {}:
                return None
        if isinstance(value, str):
            node = cel.parse(value)
        elif isinstance(value, Mapping):
            node = object_filter.translate(value)
        else:
            raise cel.CelError("a filter is a CEL expression (a string) or a filter object")
    except cel.CelError as exc:
        raise bad_request(f"Invalid filter: {exc}.", {"filter": [str(exc)]}) from None
    for path in cel.names_in(node):
        if len(path) != 1 or field_type(spec, path[0]) is None:
            raise unknown_field(spec, ".".join(path), "filter")
    return node


def every_match(node: cel.Node) -> ListQuery:
    """The list query of every record a filter matches (a bulk write's): creation order, one page, no count."""
    return ListQuery(where=[node], equals={}, sort=[], page=1, per_page=2**31 - 1, fields=None, expand=(),
                     skip_total=True)


def parse_expand(spec: CollectionSpec, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    for name in names:
        f = spec.field(name)
        if f is None or f.collection is None or f.hidden:
            raise bad_request(f"Cannot expand {name!r}: it is not a relation field of {spec.name!r}.",
                              {"expand": [f"{name!r} is not a relation field"]})
    return names


def parse_fields(spec: CollectionSpec, value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    names = tuple(dict.fromkeys(f.strip() for f in value.split(",") if f.strip()))
    for name in names:
        if field_type(spec, name) is None:
            raise unknown_field(spec, name, "fields")
    return names


def _flag(args: Mapping[str, str], name: str) -> bool:
    raw = (args.get(name) or "").lower()
    if raw not in ("", "0", "1", "true", "false"):
        raise bad_request(f"{name} must be true or false.", {name: [f"expected true/false/1/0, got {raw[:40]!r}"]})
    return raw in ("1", "true")


def _positive_int(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a positive integer.", {name: [f"not an integer: {raw[:40]!r}"]}) from None
    if value < 1:
        raise bad_request(f"{name} must be a positive integer.", {name: ["must be at least 1"]})
    return value


class FieldResolver:
    """Resolves bare field names of one collection to columns (the resolver for `filter=`)."""

    def __init__(self, spec: CollectionSpec, model: type[peewee.Model], prefix: str | None = None) -> None:
        self.spec = spec
        self.model = model
        self.prefix = prefix

    def column(self, name: str) -> cel.Column:
        kind = field_kind(self.spec, name)
        if kind is None:
            raise cel.CelError(f"unknown field {name!r}")
        return cel.Column(self.model._meta.fields[name], kind, name)

    def __call__(self, path: tuple[str, ...]) -> cel.Column | cel.Literal:
        if self.prefix:
            if len(path) != 2 or path[0] != self.prefix:
                raise cel.CelError(f"unknown name {'.'.join(path)!r}")
            path = path[1:]
        if len(path) != 1:
            raise cel.CelError(f"unknown name {'.'.join(path)!r}")
        return self.column(path[0])


def equality_value(spec: CollectionSpec, name: str, raw: str) -> Any:
    """A bare ``?field=value`` string, converted to the field's type (400 when it cannot be)."""
    kind = field_kind(spec, name)
    if raw == "null":
        return None
    if kind is None:
        return raw
    try:
        return kind.query_value(raw)
    except NoEquality:
        raise bad_request(f"{name} is a {kind.name} field and cannot be filtered by equality.",
                          {name: [f"{kind.name} fields support only filter=... == null"]}) from None
    except ValueError:
        raise bad_request(f"Invalid value for {name}: expected {kind.name}.",
                          {name: [f"expected a {kind.name} value, got {raw[:40]!r}"]}) from None


def compile_where(query: ListQuery, spec: CollectionSpec, model: type[peewee.Model], postgres: bool
                  ) -> list[peewee.Node]:
    """The WHERE conditions of a list query as peewee expressions."""
    resolver = FieldResolver(spec, model)
    compiler = cel.SqlCompiler(resolver, postgres)
    conditions: list[peewee.Node] = []
    for name, raw in query.equals.items():
        value = equality_value(spec, name, raw)
        try:
            node: cel.Node = cel.Compare("==", cel.Name((name,)), cel.Literal(value))
            conditions.append(compiler.compile(node))
        except cel.CelError as exc:
            raise bad_request(f"Invalid value for {name}: {exc}.", {name: [str(exc)]}) from None
    for node in query.where:
        try:
            conditions.append(compiler.compile(node))
        except cel.CelError as exc:
            raise bad_request(f"Invalid filter: {exc}.", {"filter": [str(exc)]}) from None
    return conditions


def filtered_listing(model: type[peewee.Model], query: Mapping[str, str], filters: tuple[str, ...],
                     default_limit: int = 50, max_limit: int = 500) -> tuple[peewee.ModelSelect, int]:
    """An admin listing (executions, jobs): equality filters on named columns plus a bounded limit.

    Unknown parameters and bad limits are 400s naming what is accepted.
    """
    accepted = (*filters, "limit")
    unknown = set(query) - set(accepted)
    if unknown:
        raise bad_request(f"Unknown filter {sorted(unknown)[0]!r}; use {', '.join(accepted)}.")
    select = model.select()
    for key in filters:
        if query.get(key):
            select = select.where(getattr(model, key) == query[key])
    try:
        limit = int(query.get("limit") or default_limit)
    except ValueError:
        raise bad_request("limit must be an integer.") from None
    if not 1 <= limit <= max_limit:
        raise bad_request(f"limit must be between 1 and {max_limit}.")
    return select, limit


RowTests = list[Callable[[Mapping[str, Any]], bool]]  # per-row checks of rules SQL cannot express


@dataclass(frozen=True)
class Page:
    """One page of the rows a caller may see, in list order, and how many match in all (-1: not counted)."""

    rows: list[dict[str, Any]]
    total: int


def filter_node(query: ListQuery, spec: CollectionSpec) -> cel.Node | None:
    """A list query's conditions (bare equality and filter) as one expression, to test a record in Python."""
    nodes: list[cel.Node] = [cel.Compare("==", cel.Name((name,)), cel.Literal(equality_value(spec, name, raw)))
                             for name, raw in query.equals.items()]
    nodes += query.where
    return functools.reduce(lambda left, right: cel.BoolOp("&&", left, right), nodes) if nodes else None


def order_of(query: ListQuery, model: type[peewee.Model], sqlite: bool) -> list[Any]:
    """The ORDER BY of a list: its sort with the id as tie-break, else creation order (as PocketBase).

    Creation order on SQLite is the rowid, which every index ends with, so a filtered page reads
    only its rows (ordering by the random text id sorted every matching row, ~6 ms at 5k rows).
    PostgreSQL has no rowid: created_at, then id.
    """
    fields = model._meta.fields
    if not query.sort:
        return [peewee.SQL("rowid")] if sqlite else [fields["created_at"], fields["id"]]
    order = [(fields[name].desc() if desc else fields[name]) for name, desc in query.sort]
    if not any(name == "id" for name, _ in query.sort):
        order.append(fields["id"])
    return order


def select_page(model: type[peewee.Model], columns: list[peewee.Field], query: ListQuery,
                conditions: list[peewee.Node], tests: RowTests, sqlite: bool) -> Page:
    """One page of a list and its count, for rows that meet ``conditions`` and pass every test.

    Without tests the database pages and counts; with them every candidate row is read in order
    and tested (O(candidate rows)), stopping at the page's end when no total is wanted.
    """
    select = model.select(*columns)
    if conditions:
        select = select.where(*conditions)
    ordered = select.order_by(*order_of(query, model, sqlite))
    if not tests:
        rows = cast(list[dict[str, Any]], list(ordered.paginate(query.page, query.per_page).dicts()))
        if query.skip_total:
            return Page(rows, -1)
        counter = model.select()
        return Page(rows, (counter.where(*conditions) if conditions else counter).count())
    start, stop = (query.page - 1) * query.per_page, query.page * query.per_page
    page: list[dict[str, Any]] = []
    passed = 0
    for row in cast(Iterator[dict[str, Any]], ordered.dicts().iterator()):
        if not all(test(row) for test in tests):
            continue
        if start <= passed < stop:
            page.append(row)
        passed += 1
        if query.skip_total and passed >= stop:
            break
    return Page(page, -1 if query.skip_total else passed)
