"""Evaluation in Python, with the same semantics as the SQL push-down (property-tested against it)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import alyx.cel.nodes as ast
from alyx.clock import parse_iso


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
    return bool(ast.OPERATORS[op](left, right))


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

    def truth(self, node: ast.Node) -> bool:
        """True only when the expression is true; false and errors (ERROR values) are not."""
        return self._truth(node) is True

    def _truth(self, node: ast.Node) -> bool | ast.NoValueType:
        """True, False or ERROR, with CEL's rules: false && error is false, true || error is true."""
        if isinstance(node, ast.BoolOp):
            absorbing = node.op != "&&"  # false absorbs &&, true absorbs ||
            result: bool | ast.NoValueType = not absorbing
            for operand in ast.chain(node):
                value = self._truth(operand)
                if value is absorbing:
                    return absorbing
                if value is ast.ERROR:
                    result = ast.ERROR
            return result
        if isinstance(node, ast.Not):
            value = self._truth(node.operand)
            return value if value is ast.ERROR else not value
        if isinstance(node, ast.Compare):
            left, right = self.value(node.left), self.value(node.right)
            if ast.ERROR in (left, right) or (isinstance(right, list) and any(v is ast.ERROR for v in right)):
                return ast.ERROR
            left, right = self._align(left, right), self._align(right, left)
            return bool(evaluate_compare(node.op, left, right))
        if isinstance(node, ast.Method):
            target, argument = self.value(node.target), self.value(node.argument)
            if ast.ERROR in (target, argument):
                return ast.ERROR
            return evaluate_method(node.name, target, argument)
        value = self.value(node)
        return ast.ERROR if value is ast.ERROR else value is True

    @staticmethod
    def _align(mine: Any, other: Any) -> Any:
        """Literal strings compared with a datetime/date value are parsed, as in SQL."""
        if isinstance(mine, str) and isinstance(other, (dt.datetime, dt.date)):
            parsed = parse_iso(mine) if isinstance(other, dt.datetime) else _parse_date(mine)
            return parsed if parsed is not None else mine
        return mine

    def value(self, node: ast.Node) -> Any:
        if isinstance(node, ast.Literal):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.path)
        if isinstance(node, ast.ListOf):
            return [self.value(item) for item in node.items]
        return self._truth(node)


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
