"""Collection access rules in CEL: compiled at start, pushed down into SQL, evaluated per record.

Variables: ``auth`` (null for anonymous, else {id, email, role, verified}), ``doc`` (the record),
``request`` ({method, query, body, time}). No rule means admins only; admins bypass every rule.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import peewee

from alyx import cel
from alyx.clock import utcnow
from alyx.errors import ConfigError
from alyx.query import field_kind
from alyx.schema import RULE_OPERATIONS, CollectionSpec, Schema

AUTH_KEYS = ("id", "email", "role", "verified")
REQUEST_KEYS = ("method", "time")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the `auth` variable of rules."""

    id: str
    email: str
    role: str = "user"
    verified: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of a caller (rules' `auth`, a function's `req.auth`, realtime's `auth` frame)."""
        return {"id": self.id, "email": self.email, "role": self.role, "verified": self.verified}


# The server itself (an admin): writes the server makes on its own behalf (`alyx admin create`), and the runs
# of functions whose manifest says ``run_as: system`` (alyx/events/trigger.py).
SYSTEM_PRINCIPAL = Principal("system", "system@alyx.local", "admin", True)


@dataclass(frozen=True)
class RequestInfo:
    """The parts of the HTTP request rules may look at (`request.method`, `request.time`, ...)."""

    method: str = "GET"
    query: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)
    time: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Rule:
    """One compiled rule: None (admins only), always true, or an expression.

    ``pushdown`` is False for rules that cannot become SQL (e.g. `auth.id in doc.editors` on a json
    list): they are evaluated per record in Python instead.
    """

    collection: str
    operation: str
    text: str | None
    node: cel.Node | None
    pushdown: bool = True
    reads_request: bool = False  # the rule looks at request.*: its SQL differs per request
    query_params: frozenset[str] = frozenset()  # the k of every request.query.<k> it reads

    @functools.cached_property
    def public(self) -> bool:
        """Always true: no condition at all (asked on every read, so worked out once)."""
        return self.node == cel.Literal(True)


@dataclass(frozen=True)
class Visibility:
    """What a caller may touch for one operation: a SQL condition (None: no condition) and, for rules
    that cannot be pushed down, a per-record test to apply to the rows that condition returns."""

    sql: peewee.Node | None
    test: Callable[[Mapping[str, Any]], bool] | None = None


EVERY_RECORD = Visibility(None)  # no condition and no test: what most reads get (one instance, not one per read)


def _auth_value(auth: Principal | None, key: str | None) -> Any:
    if auth is None:  # `auth` is null; `auth.id` of null is a CEL error (it never matches a null column)
        return None if key is None else cel.ERROR
    if key is None:
        return auth.as_dict()
    return getattr(auth, key)


class RuleNames:
    """Resolves the names of a rule: doc.<field> → column; auth.* / request.* → bound values."""

    def __init__(self, spec: CollectionSpec, model: type[peewee.Model] | None, auth: Principal | None,
                 request: RequestInfo | None, dry_run: bool = False) -> None:
        self.spec, self.model, self.auth, self.request = spec, model, auth, request or RequestInfo()
        self.dry_run = dry_run  # compile-time check: request values are unknown, so not type-checked

    def __call__(self, path: tuple[str, ...]) -> cel.Column | cel.Literal:
        root = path[0]
        if root == "auth":
            if len(path) == 1:
                return cel.Literal(_auth_value(self.auth, None))
            if len(path) == 2 and path[1] in AUTH_KEYS:
                return cel.Literal(_auth_value(self.auth, path[1]))
        elif root == "doc" and len(path) == 2:
            kind = field_kind(self.spec, path[1])
            if kind is not None:
                column = self.model._meta.fields[path[1]] if self.model is not None else None
                # model-less compiles (schema checks) have no column; cel reads only the type then
                return cel.Column(column, kind, path[1])  # type: ignore[arg-type]
        elif root == "request" and len(path) == 2 and path[1] in REQUEST_KEYS:
            return cel.Literal(getattr(self.request, path[1]))
        elif root == "request" and len(path) == 3 and path[1] in ("query", "body"):
            if self.dry_run:
                return cel.Literal(cel.ERROR)
            return cel.Literal(getattr(self.request, path[1]).get(path[2]))  # a missing key is null
        raise cel.CelError(f"unknown name {'.'.join(path)!r} (rules see auth.{{{','.join(AUTH_KEYS)}}}, "
                           f"doc.<field>, request.{{method,time,query.<k>,body.<k>}})")


class AccessRules:
    """The compiled rules of every collection, and the questions records ask of them."""

    def __init__(self, schema: Schema, models: Mapping[str, type[peewee.Model]], postgres: bool) -> None:
        self.postgres = postgres
        self.models = models
        self.schema = schema
        self.rules: dict[tuple[str, str], Rule] = {}
        self._where_cache: dict[tuple[str, str, Principal | None], peewee.Node] = {}
        for spec in schema.collections.values():
            for op in RULE_OPERATIONS:
                self.rules[(spec.name, op)] = self._compile(spec, op, spec.rules.get(op))

    def _compile(self, spec: CollectionSpec, op: str, text: str | None) -> Rule:
        if text is None:
            return Rule(spec.name, op, None, None)
        pushdown = True
        try:
            node = cel.parse(text)
            # A dry run with an anonymous and a signed-in caller checks every name and type now.
            for auth in (None, Principal("x" * 15, "a@b.c")):
                names = RuleNames(spec, self.models[spec.name], auth, None, dry_run=True)
                try:
                    cel.SqlCompiler(names, self.postgres).compile(node)
                except cel.NotPushable:
                    pushdown = False
                    for path in cel.names_in(node):
                        names(path)  # every name must still exist
        except cel.CelError as exc:
            raise ConfigError(f"schema.yaml: collection {spec.name!r}, rule {op!r}: {exc} (rule: {text})") from None
        paths = cel.names_in(node)
        reads_request = any(path[0] == "request" for path in paths)
        query_params = frozenset(path[2] for path in paths if len(path) == 3 and path[:2] == ("request", "query"))
        return Rule(spec.name, op, text, node, pushdown, reads_request, query_params)

    @functools.cached_property
    def read_request(self) -> bool:
        """Whether any rule looks at ``request.*``; when none does, callers may pass no RequestInfo."""
        return any(rule.reads_request for rule in self.rules.values())

    def rule(self, collection: str, op: str) -> Rule:
        return self.rules[(collection, op)]

    def query_params(self, collection: str) -> frozenset[str]:
        """The query parameters the rules of a collection read (`request.query.<k>`): a list accepts them."""
        return frozenset().union(*(self.rule(collection, op).query_params for op in RULE_OPERATIONS))

    def visibility(self, collection: str, op: str, auth: Principal | None, request: RequestInfo | None = None
                   ) -> Visibility:
        """The SQL condition of `op`, plus a per-record test when the rule cannot be pushed down."""
        rule = self.rule(collection, op)
        if rule.pushdown or (auth is not None and auth.is_admin):
            condition = self.where(collection, op, auth, request)
            return EVERY_RECORD if condition is None else Visibility(condition)
        return Visibility(None, lambda row: self.allows(collection, op, auth, row, request))

    def where(self, collection: str, op: str, auth: Principal | None, request: RequestInfo | None = None
              ) -> peewee.Node | None:
        """The SQL condition a record must meet for `op`; None means every record passes.

        A rule that cannot be pushed down gives "no record" here (fail closed): use `visibility`.
        """
        if auth is not None and auth.is_admin:
            return None
        rule = self.rule(collection, op)
        if rule.node is None or not rule.pushdown:
            return cel.FALSE_SQL
        if rule.public:
            return None
        key = None if rule.reads_request else (collection, op, auth)
        if key is not None:  # the condition depends on nothing else: compile once per caller
            cached = self._where_cache.get(key)
            if cached is not None:
                return cached
        spec = self.schema.collections[collection]
        names = RuleNames(spec, self.models[collection], auth, request)
        try:
            condition = cel.SqlCompiler(names, self.postgres, errors_deny=True).compile(rule.node)
        except cel.CelError:
            condition = cel.FALSE_SQL  # a rule that errors at run time denies
        if key is not None:
            if len(self._where_cache) >= 8192:
                self._where_cache.clear()
            self._where_cache[key] = condition
        return condition

    def allows(self, collection: str, op: str, auth: Principal | None, doc: Mapping[str, Any],
               request: RequestInfo | None = None) -> bool:
        """Evaluate the rule in Python against a record that is not (yet) stored."""
        if auth is not None and auth.is_admin:
            return True
        rule = self.rule(collection, op)
        if rule.node is None:
            return False
        if rule.public:
            return True
        spec = self.schema.collections[collection]
        names = RuleNames(spec, None, auth, request)

        def lookup(path: tuple[str, ...]) -> Any:
            resolved = names(path)
            return doc.get(resolved.name) if isinstance(resolved, cel.Column) else resolved.value

        try:
            return cel.Evaluator(lookup).truth(rule.node)
        except (cel.CelError, TypeError, ValueError):
            return False
