"""The SQL push-down: AST → peewee expression through a resolver; two-valued, so NULL never leaks into NOT."""
from __future__ import annotations

from typing import Any

import peewee

import alyx.cel.nodes as ast
from alyx.cel.columns import Column, Family, Resolver, coerce_for
from alyx.cel.evaluate import evaluate_compare, evaluate_method


class _NoValue(Exception):
    """Raised while compiling a comparison that involves ERROR (internal: it never escapes)."""


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

    def compile(self, node: ast.Node) -> peewee.Node:
        """The SQL condition of the rows for which the expression is true.

        A name that has no value (``auth.id`` for an anonymous caller: ERROR) makes its comparison
        neither true nor false, as in CEL: ``false && error`` is false, ``true || error`` is true, and
        otherwise the error denies — under ``!`` too. So each part compiles to a pair (rows where it
        is true, rows where it is false), and only the outer "true" side reaches SQL.
        """
        return _as_sql(self._true_false(node)[0])

    def _true_false(self, node: ast.Node) -> tuple[peewee.Node | bool, peewee.Node | bool]:
        if isinstance(node, ast.BoolOp):  # flat: a long run of || must not nest (and recurse) per operand
            pairs = [self._true_false(operand) for operand in ast.chain(node)]
            trues, falses = [t for t, _ in pairs], [f for _, f in pairs]
            if node.op == "&&":
                return _sql_all(trues), _sql_any(falses)
            return _sql_any(trues), _sql_all(falses)
        if isinstance(node, ast.Not):
            true, false = self._true_false(node.operand)
            return false, true
        try:
            condition = self._condition(node)
        except _NoValue:
            return False, False
        except ast.CelError:
            if not self.errors_deny:
                raise
            return False, False
        if condition is TRUE_SQL:
            return True, False
        if condition is FALSE_SQL:
            return False, True
        return condition, ~self._paren(condition)

    def _condition(self, node: ast.Node) -> peewee.Node:
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Method):
            return self._method(node)
        operand = self._operand(node)
        if isinstance(operand, Column):
            if operand.family is not Family.BOOL:
                raise ast.CelError(f"{operand.name} is a {operand.type} field, not a condition")
            return operand.field.is_null(False) & (operand.field == True)  # noqa: E712
        if isinstance(operand, bool):
            return TRUE_SQL if operand else FALSE_SQL
        raise ast.CelError("the expression must be a condition (true or false)")

    @staticmethod
    def _paren(expr: peewee.Node) -> peewee.ColumnBase:
        return peewee.NodeList((expr,), parens=True)

    def _operand(self, node: ast.Node) -> Column | Any:
        if isinstance(node, ast.Literal):
            return node.value
        if isinstance(node, ast.Name):
            resolved = self.resolve(node.path)
            if isinstance(resolved, ast.Literal) and resolved.value is ast.ERROR:
                raise _NoValue(node.text)
            return resolved.value if isinstance(resolved, ast.Literal) else resolved
        if isinstance(node, ast.ListOf):
            values = [self._operand(item) for item in node.items]
            if any(isinstance(v, Column) for v in values):
                raise ast.CelError("lists may only hold literal values")
            return values
        raise ast.CelError("a condition cannot be used as a value here")

    def _compare(self, node: ast.Compare) -> peewee.Node:
        left, right = self._operand(node.left), self._operand(node.right)
        op = node.op
        if op == "in":
            if isinstance(right, Column) and right.family is Family.OPAQUE:
                raise ast.NotPushable(f"'in {right.name}' (a {right.type} field) cannot be computed in SQL")
            if not isinstance(right, list):
                raise ast.CelError("'in' needs a list on its right-hand side")
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
            both: peewee.Node = left.field.is_null(False) & right.field.is_null(False) & ast.OPERATORS[op](left.field,
                                                                                                       right.field)
            return both
        if isinstance(left, Column):
            if isinstance(right, list):
                raise ast.CelError(f"{left.name} cannot be compared with a list (did you mean 'in'?)")
            value = coerce_for(left, right)
            if value is None:
                if op == "==":
                    return left.field.is_null()
                if op == "!=":
                    return left.field.is_null(False)
                raise ast.CelError(f"{left.name} cannot be ordered against null")
            if left.family is Family.OPAQUE:
                raise ast.CelError(f"{left.name} is a {left.type} field: only == null and != null are supported")
            if op == "!=":
                return self._paren(left.field.is_null() | (left.field != value))
            ordered: peewee.Node = left.field.is_null(False) & ast.OPERATORS[op](left.field, value)
            return ordered
        return TRUE_SQL if evaluate_compare(op, left, right) else FALSE_SQL

    @staticmethod
    def _check_compatible(a: Column, b: Column) -> None:
        if a.family is not b.family or a.family is Family.OPAQUE:
            raise ast.CelError(f"{a.name} ({a.type}) and {b.name} ({b.type}) cannot be compared")

    def _method(self, node: ast.Method) -> peewee.Node:
        target, arg = self._operand(node.target), self._operand(node.argument)
        if isinstance(arg, Column) or not isinstance(arg, str):
            raise ast.CelError(f"{node.name}() needs a string literal argument")
        if "\x00" in arg:
            raise ast.CelError(f"{node.name}(): strings may not contain NUL characters")
        if not isinstance(target, Column):
            return TRUE_SQL if evaluate_method(node.name, target, arg) else FALSE_SQL
        if target.family is not Family.TEXT:
            raise ast.CelError(f"{node.name}() applies to text fields, and {target.name} is a {target.type} field")
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
