"""A CEL subset shared by `filter=` and access rules: parse once, push down to SQL, or evaluate.

Knows nothing of collections: a resolver decides what each name means (a column, or a bound
value such as ``auth.id``), so whitelisting lives in one place and no text ever reaches SQL.
"""
from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import lark
import peewee
from celpy import celparser
from celpy.evaluation import celstr

from alyx.clock import parse_iso

MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 64  # brackets in the text
MAX_NESTING = 20  # levels of the AST (SQLite's parser overflows near 30 levels of generated SQL)
MAX_LIST_ITEMS = 500
COMPARISONS = {"relation_eq": "==", "relation_ne": "!=", "relation_lt": "<", "relation_le": "<=",
               "relation_gt": ">", "relation_ge": ">=", "relation_in": "in"}
STRING_METHODS = ("contains", "startsWith", "endsWith")


class CelError(ValueError):
    """The expression is not valid CEL, or uses something this dialect does not support."""


class NotPushable(CelError):
    """Valid, but this part cannot become SQL (e.g. `auth.id in doc.editors` on a json list).

    Filters refuse such expressions (400); access rules fall back to evaluating them per record.
    """


class _NoValueType:
    """The value of a name that has none for this caller (``auth.id`` when anonymous): a CEL error value."""

    _instance: _NoValueType | None = None

    def __new__(cls) -> _NoValueType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ERROR"


ERROR: Final[_NoValueType] = _NoValueType()


class _NoValue(Exception):
    """Raised while compiling a comparison that involves ERROR (internal: it never escapes)."""


# -- the AST ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Name:
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ListOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "&&" or "||"
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >= in
    left: Node
    right: Node


@dataclass(frozen=True)
class Method:
    name: str  # contains | startsWith | endsWith
    target: Node
    argument: Node


Node = Literal | Name | ListOf | Not | BoolOp | Compare | Method


# -- parsing ------------------------------------------------------------------------------------
_parser = celparser.CELParser()


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """CEL text → AST of the supported subset; CelError says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise CelError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise CelError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    depth = 0
    for ch in text:  # cheap guard before lark recurses
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if depth > MAX_DEPTH:
            raise CelError(f"the expression nests deeper than {MAX_DEPTH} levels")
    try:
        tree = _parser.parse(text)
    except celparser.CELParseError as exc:
        raise CelError(f"syntax error: {_first_line(exc)}") from None
    except (lark.exceptions.LarkError, RecursionError) as exc:
        raise CelError(f"syntax error: {_first_line(exc)}") from None
    try:
        node = _Builder().build(tree, 0)
        deep = nesting(node) > MAX_NESTING
    except RecursionError:
        deep = True
    if deep:  # SQL generation, SQLite's parser and evaluation recurse per level: bound them here, once
        raise CelError(f"the expression nests deeper than {MAX_NESTING} levels")
    return node


def chain(node: BoolOp) -> list[Node]:
    """The operands of a run of one operator (a || b || c), left to right, found without recursion."""
    operands: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, BoolOp) and item.op == node.op:
            stack += [item.right, item.left]
        else:
            operands.append(item)
    return operands


def nesting(node: Node) -> int:
    """How deeply an expression nests; a run of one operator (a || b || c) is one level."""
    if isinstance(node, BoolOp):
        children: list[Node] = chain(node)
    else:
        children = [getattr(node, a) for a in ("operand", "left", "right", "target", "argument") if hasattr(node, a)]
        children += list(getattr(node, "items", ()))
    return 1 + max((nesting(child) for child in children), default=0)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__


class _Builder:
    def build(self, tree: Any, depth: int) -> Node:
        if depth > MAX_DEPTH * 12:
            raise CelError(f"the expression nests deeper than {MAX_DEPTH} levels")
        if isinstance(tree, lark.Token):
            return self.token(tree)
        kind, kids = tree.data, tree.children
        d = depth + 1
        if kind in ("expr",):
            if len(kids) != 1:
                raise CelError("the conditional operator ?: is not supported")
            return self.build(kids[0], d)
        if kind == "conditionalor":
            if len(kids) == 1:
                return self.build(kids[0], d)
            return BoolOp("||", self.build(kids[0], d), self.build(kids[1], d))
        if kind == "conditionaland":
            if len(kids) == 1:
                return self.build(kids[0], d)
            return BoolOp("&&", self.build(kids[0], d), self.build(kids[1], d))
        if kind == "relation":
            if len(kids) == 1:
                return self.build(kids[0], d)
            op_tree, right = kids
            return Compare(COMPARISONS[op_tree.data], self.build(op_tree.children[0], d), self.build(right, d))
        if kind in ("addition", "multiplication"):
            if len(kids) == 1:
                return self.build(kids[0], d)
            raise CelError("arithmetic is not supported in this dialect")
        if kind == "unary":
            if len(kids) == 1:
                return self.build(kids[0], d)
            op = kids[0].data
            operand = self.build(kids[1], d)
            if op == "unary_not":
                return Not(operand)
            if op == "unary_neg" and isinstance(operand, Literal) and isinstance(operand.value, (int, float)) \
                    and not isinstance(operand.value, bool):
                return Literal(-operand.value)
            raise CelError("negation is only supported on number literals")
        if kind in ("member", "primary"):
            return self.build(kids[0], d)
        if kind == "paren_expr":
            return self.build(kids[0], d)
        if kind == "member_dot":
            target = self.build(kids[0], d)
            if not isinstance(target, Name):
                raise CelError("field selection is only supported on names")
            return Name(target.path + (str(kids[1]),))
        if kind == "member_dot_arg":
            target = self.build(kids[0], d)
            method = str(kids[1])
            args = self.exprlist(kids[2] if len(kids) > 2 else None, d)
            if method not in STRING_METHODS:
                raise CelError(f"unsupported method {method!r} (supported: {', '.join(STRING_METHODS)})")
            if len(args) != 1:
                raise CelError(f"{method}() takes exactly one argument")
            return Method(method, target, args[0])
        if kind == "ident":
            return Name((str(kids[0]),))
        if kind == "list_lit":
            items = self.exprlist(kids[0] if kids else None, d)
            if len(items) > MAX_LIST_ITEMS:
                raise CelError(f"lists are limited to {MAX_LIST_ITEMS} items")
            return ListOf(tuple(items))
        if kind == "literal":
            return self.token(kids[0])
        if kind == "ident_arg":
            raise CelError(f"unsupported function {str(kids[0])!r}")
        raise CelError(f"unsupported construct ({kind.replace('_', ' ')})")

    def exprlist(self, tree: Any, depth: int) -> list[Node]:
        if tree is None:
            return []
        return [self.build(child, depth + 1) for child in tree.children]

    def token(self, tok: lark.Token) -> Node:
        t = tok.type
        if t == "INT_LIT":
            return Literal(int(tok.value, 0) if tok.value.lower().startswith(("0x", "-0x")) else int(tok.value))
        if t == "UINT_LIT":
            return Literal(int(tok.value.rstrip("uU"), 0))
        if t == "FLOAT_LIT":
            return Literal(float(tok.value))
        if t == "STRING_LIT":
            text = str(celstr(tok))
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise CelError("string literals must be valid Unicode (a lone surrogate escape is not)") from None
            return Literal(text)
        if t == "BOOL_LIT":
            return Literal(tok.value == "true")
        if t == "NULL_LIT":
            return Literal(None)
        if t == "IDENT":
            return Name((str(tok.value),))
        raise CelError(f"unsupported literal {tok.value[:40]!r}")


# -- resolving names ----------------------------------------------------------------------------
class Family(enum.Enum):
    """Which values a column holds, as far as comparisons go: columns of one family compare with each
    other, text columns take the string methods, bool columns are conditions, opaque ones (json) only
    compare with null."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    DATE = "date"
    OPAQUE = "opaque"


class Coercer(Protocol):
    """A column's type as the compiler sees it; the resolver supplies it, so cel knows no field types."""

    @property
    def name(self) -> str:
        """The type's name, for messages."""

    @property
    def family(self) -> Family: ...

    def cel_literal(self, value: Any) -> Any:
        """A non-null literal made comparable with the column (a bound SQL value); TypeError when the
        literal is of the wrong kind, ValueError when it is of the right kind but invalid."""


@dataclass(frozen=True)
class Column:
    """A name that refers to a stored field: its peewee column and its type's coercer."""

    field: peewee.Field
    coercer: Coercer
    name: str

    @property
    def type(self) -> str:
        """The field type's name (for messages)."""
        return self.coercer.name

    @property
    def family(self) -> Family:
        return self.coercer.family


class Resolver(Protocol):
    """Decides what a name means; raises CelError for names that are not allowed."""

    def __call__(self, path: tuple[str, ...]) -> Column | Literal: ...


def coerce_for(column: Column, value: Any) -> Any:
    """A literal made comparable with a column (numbers as bound SQL values), or CelError naming the mismatch."""
    if value is None:
        return None
    if isinstance(value, str) and "\x00" in value:
        raise CelError(f"{column.name}: strings may not contain NUL characters")
    try:
        return column.coercer.cel_literal(value)
    except TypeError:
        raise CelError(f"{column.name} is a {column.type} field and cannot be compared with {_describe(value)}"
                       ) from None
    except ValueError:
        raise CelError(f"{column.name}: {value!r} is not a valid {column.type}") from None


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# -- SQL push-down ------------------------------------------------------------------------------
TRUE_SQL = peewee.SQL("1 = 1")
FALSE_SQL = peewee.SQL("1 = 0")


class SqlCompiler:
    """AST → peewee expression. Every comparison is two-valued (NULL never leaks into NOT)."""

    def __init__(self, resolver: Resolver, postgres: bool, errors_deny: bool = False) -> None:
        """``errors_deny``: a comparison that fails on this call's values (an access rule at run time,
        e.g. a malformed date in request.query) is a CEL error — neither true nor false — instead of
        raising; compile-time checks leave it False so that mistakes surface."""
        self.resolve = resolver
        self.postgres = postgres
        self.errors_deny = errors_deny

    def compile(self, node: Node) -> peewee.Node:
        """The SQL condition of the rows for which the expression is true.

        A name that has no value (``auth.id`` for an anonymous caller: ERROR) makes its comparison
        neither true nor false, as in CEL: ``false && error`` is false, ``true || error`` is true, and
        otherwise the error denies — under ``!`` too. So each part compiles to a pair (rows where it
        is true, rows where it is false), and only the outer "true" side reaches SQL.
        """
        return _as_sql(self._true_false(node)[0])

    def _true_false(self, node: Node) -> tuple[peewee.Node | bool, peewee.Node | bool]:
        if isinstance(node, BoolOp):  # flat: a long run of || must not nest (and recurse) per operand
            pairs = [self._true_false(operand) for operand in chain(node)]
            trues, falses = [t for t, _ in pairs], [f for _, f in pairs]
            if node.op == "&&":
                return _sql_all(trues), _sql_any(falses)
            return _sql_any(trues), _sql_all(falses)
        if isinstance(node, Not):
            true, false = self._true_false(node.operand)
            return false, true
        try:
            condition = self._condition(node)
        except _NoValue:
            return False, False
        except CelError:
            if not self.errors_deny:
                raise
            return False, False
        if condition is TRUE_SQL:
            return True, False
        if condition is FALSE_SQL:
            return False, True
        return condition, ~self._paren(condition)

    def _condition(self, node: Node) -> peewee.Node:
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Method):
            return self._method(node)
        operand = self._operand(node)
        if isinstance(operand, Column):
            if operand.family is not Family.BOOL:
                raise CelError(f"{operand.name} is a {operand.type} field, not a condition")
            return operand.field.is_null(False) & (operand.field == True)  # noqa: E712
        if isinstance(operand, bool):
            return TRUE_SQL if operand else FALSE_SQL
        raise CelError("the expression must be a condition (true or false)")

    @staticmethod
    def _paren(expr: peewee.Node) -> peewee.ColumnBase:
        return peewee.NodeList((expr,), parens=True)

    def _operand(self, node: Node) -> Column | Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Name):
            resolved = self.resolve(node.path)
            if isinstance(resolved, Literal) and resolved.value is ERROR:
                raise _NoValue(node.text)
            return resolved.value if isinstance(resolved, Literal) else resolved
        if isinstance(node, ListOf):
            values = [self._operand(item) for item in node.items]
            if any(isinstance(v, Column) for v in values):
                raise CelError("lists may only hold literal values")
            return values
        raise CelError("a condition cannot be used as a value here")

    def _compare(self, node: Compare) -> peewee.Node:
        left, right = self._operand(node.left), self._operand(node.right)
        op = node.op
        if op == "in":
            if isinstance(right, Column) and right.family is Family.OPAQUE:
                raise NotPushable(f"'in {right.name}' (a json field) cannot be computed in SQL")
            if not isinstance(right, list):
                raise CelError("'in' needs a list on its right-hand side")
            if isinstance(left, Column):
                values = [coerce_for(left, v) for v in right if v is not None]
                if not values:
                    return left.field.is_null() if None in right else FALSE_SQL
                clause = left.field.is_null(False) & left.field.in_(values)
                return (clause | left.field.is_null()) if None in right else clause
            return TRUE_SQL if evaluate_compare("in", left, right) else FALSE_SQL
        if not isinstance(left, Column) and isinstance(right, Column):
            left, right, op = right, left, _FLIP[op]
        if isinstance(left, Column) and isinstance(right, Column):
            self._check_compatible(left, right)
            if op in ("==", "!="):
                both_set = left.field.is_null(False) & right.field.is_null(False) & (left.field == right.field)
                eq = self._paren(self._paren(both_set) | (left.field.is_null() & right.field.is_null()))
                return eq if op == "==" else ~eq
            both: peewee.Node = left.field.is_null(False) & right.field.is_null(False) & _SQL_OPS[op](left.field,
                                                                                                       right.field)
            return both
        if isinstance(left, Column):
            if isinstance(right, list):
                raise CelError(f"{left.name} cannot be compared with a list (did you mean 'in'?)")
            value = coerce_for(left, right)
            if value is None:
                if op == "==":
                    return left.field.is_null()
                if op == "!=":
                    return left.field.is_null(False)
                raise CelError(f"{left.name} cannot be ordered against null")
            if left.family is Family.OPAQUE:
                raise CelError(f"{left.name} is a json field: only == null and != null are supported")
            if op == "!=":
                return self._paren(left.field.is_null() | (left.field != value))
            ordered: peewee.Node = left.field.is_null(False) & _SQL_OPS[op](left.field, value)
            return ordered
        return TRUE_SQL if evaluate_compare(op, left, right) else FALSE_SQL

    @staticmethod
    def _check_compatible(a: Column, b: Column) -> None:
        if a.family is not b.family or a.family is Family.OPAQUE:
            raise CelError(f"{a.name} ({a.type}) and {b.name} ({b.type}) cannot be compared")

    def _method(self, node: Method) -> peewee.Node:
        target, arg = self._operand(node.target), self._operand(node.argument)
        if isinstance(arg, Column) or not isinstance(arg, str):
            raise CelError(f"{node.name}() needs a string literal argument")
        if "\x00" in arg:
            raise CelError(f"{node.name}(): strings may not contain NUL characters")
        if not isinstance(target, Column):
            return TRUE_SQL if evaluate_method(node.name, target, arg) else FALSE_SQL
        if target.family is not Family.TEXT:
            raise CelError(f"{node.name}() applies to text fields, and {target.name} is a {target.type} field")
        col = target.field
        test: peewee.Node
        if node.name == "contains":
            test = (peewee.fn.strpos(col, arg) > 0) if self.postgres else (peewee.fn.instr(col, arg) > 0)
        elif node.name == "startsWith":
            test = peewee.fn.substr(col, 1, len(arg)) == arg
        else:
            tail = peewee.fn.right(col, len(arg)) if self.postgres else peewee.fn.substr(col, -len(arg))
            test = (tail == arg) if arg else TRUE_SQL
        return col.is_null(False) & test


def _as_sql(condition: peewee.Node | bool) -> peewee.Node:
    if condition is True:
        return TRUE_SQL
    if condition is False:
        return FALSE_SQL
    return condition


def _sql_join(parts: list[peewee.Node | bool], absorbing: bool, glue: str) -> peewee.Node | bool:
    """AND (absorbing False) or OR (absorbing True) of parts, with the constants folded away."""
    if any(p is absorbing for p in parts):
        return absorbing
    parts = [p for p in parts if p is not (not absorbing)]
    if not parts:
        return not absorbing
    return parts[0] if len(parts) == 1 else peewee.NodeList(parts, glue=glue, parens=True)


def _sql_all(parts: list[peewee.Node | bool]) -> peewee.Node | bool:
    return _sql_join(parts, False, " AND ")


def _sql_any(parts: list[peewee.Node | bool]) -> peewee.Node | bool:
    return _sql_join(parts, True, " OR ")


_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SQL_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


# -- evaluation in Python -------------------------------------------------------------------------
def evaluate_compare(op: str, left: Any, right: Any) -> bool:
    """CEL comparison semantics on plain values: mismatched types compare unequal, never raise."""
    if op == "in":
        return isinstance(right, list) and any(_equal(left, item) for item in right)
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if left is None or right is None or not _comparable(left, right):
        return False
    return bool(_SQL_OPS[op](left, right))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if a is None or b is None:
        return a is None and b is None
    if not _comparable(a, b):
        return False
    return bool(a == b)


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return True
    for kind in (str, dt.datetime, dt.date):
        if isinstance(a, kind) and isinstance(b, kind):
            return True
    return type(a) is type(b)


def evaluate_method(name: str, target: Any, arg: Any) -> bool:
    if not isinstance(target, str) or not isinstance(arg, str):
        return False
    if name == "contains":
        return arg in target
    if name == "startsWith":
        return target.startswith(arg)
    return target.endswith(arg)


class Evaluator:
    """Evaluates an AST against values in Python, with the same semantics as the SQL push-down.

    ``lookup(path)`` returns the value of a name (a record's field, ``auth.id``, ...).
    """

    def __init__(self, lookup: Callable[[tuple[str, ...]], Any], coerce: Callable[[tuple[str, ...], Any], Any]
                 | None = None) -> None:
        self.lookup = lookup
        self.coerce = coerce

    def truth(self, node: Node) -> bool:
        """True only when the expression is true; false and errors (ERROR values) are not."""
        return self._truth(node) is True

    def _truth(self, node: Node) -> bool | _NoValueType:
        """True, False or ERROR, with CEL's rules: false && error is false, true || error is true."""
        if isinstance(node, BoolOp):
            absorbing = node.op != "&&"  # false absorbs &&, true absorbs ||
            result: bool | _NoValueType = not absorbing
            for operand in chain(node):
                value = self._truth(operand)
                if value is absorbing:
                    return absorbing
                if value is ERROR:
                    result = ERROR
            return result
        if isinstance(node, Not):
            value = self._truth(node.operand)
            return value if value is ERROR else not value
        if isinstance(node, Compare):
            left, right = self.value(node.left), self.value(node.right)
            if left is ERROR or right is ERROR or (isinstance(right, list) and any(v is ERROR for v in right)):
                return ERROR
            left, right = self._align(left, right), self._align(right, left)
            return bool(evaluate_compare(node.op, left, right))
        if isinstance(node, Method):
            target, argument = self.value(node.target), self.value(node.argument)
            if ERROR in (target, argument):
                return ERROR
            return evaluate_method(node.name, target, argument)
        value = self.value(node)
        return ERROR if value is ERROR else value is True

    @staticmethod
    def _align(mine: Any, other: Any) -> Any:
        """Literal strings compared with a datetime/date value are parsed, as in SQL."""
        if isinstance(mine, str) and isinstance(other, (dt.datetime, dt.date)):
            parsed = parse_iso(mine) if isinstance(other, dt.datetime) else _parse_date(mine)
            return parsed if parsed is not None else mine
        return mine

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Name):
            return self.lookup(node.path)
        if isinstance(node, ListOf):
            return [self.value(item) for item in node.items]
        return self._truth(node)


def names_in(node: Node) -> set[tuple[str, ...]]:
    """Every name an expression refers to."""
    if isinstance(node, Name):
        return {node.path}
    found: set[tuple[str, ...]] = set()
    for attr in ("left", "right", "operand", "target", "argument"):
        child = getattr(node, attr, None)
        if child is not None:
            found |= names_in(child)
    for item in getattr(node, "items", ()):
        found |= names_in(item)
    return found
