"""Object filters (`{field: value}`, `{field: {$lt: v}}`, `$and`/`$or`) → the CEL AST of `filter=`.

The README's form for functions and clients, translated node by node onto alyx/cel.py's AST:
values become bound literals, never text. Knows nothing of collections: which names exist is
checked by the caller, exactly as for a CEL string (alyx/query.py).
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping
from typing import Any

from alyx import cel
from alyx.clock import iso

COMPARISONS = {"$eq": "==", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
LIST_OPERATORS = ("$in", "$nin")
COMBINATORS = ("$and", "$or")
OPERATORS = (*COMPARISONS, *LIST_OPERATORS)
MAX_CLAUSES = 500  # comparisons in one filter


def translate(value: Any) -> cel.Node:
    """An object filter → one CEL node (an empty object matches every record); CelError says what is wrong."""
    if not isinstance(value, Mapping):
        raise cel.CelError(f"an object filter must be a JSON object, not {_kind(value)}")
    counter = [0]
    node = _object(value, 0, counter)
    if cel.nesting(node) > cel.MAX_NESTING:
        raise cel.CelError(f"the filter nests deeper than {cel.MAX_NESTING} levels")
    return node


def _object(obj: Mapping[Any, Any], depth: int, counter: list[int]) -> cel.Node:
    if depth > cel.MAX_NESTING:
        raise cel.CelError(f"the filter nests deeper than {cel.MAX_NESTING} levels")
    parts: list[cel.Node] = []
    for key, item in obj.items():
        if not isinstance(key, str) or not key:
            raise cel.CelError("filter keys must be field names or $and/$or")
        if key in COMBINATORS:
            parts.append(_combine(key, item, depth, counter))
        elif key.startswith("$"):
            raise cel.CelError(f"unknown operator {key[:40]!r} at the top level (use $and, $or, "
                               f"or field: {{{', '.join(OPERATORS)}: value}})")
        else:
            parts.append(_field(key, item, counter))
    return _all(parts) if parts else cel.Literal(True)


def _combine(op: str, items: Any, depth: int, counter: list[int]) -> cel.Node:
    if not isinstance(items, list) or not items:
        raise cel.CelError(f"{op} needs a non-empty list of filter objects")
    nodes = []
    for item in items:
        if not isinstance(item, Mapping):
            raise cel.CelError(f"{op} needs a list of filter objects, and one item is {_kind(item)}")
        nodes.append(_object(item, depth + 1, counter))
    glue = "&&" if op == "$and" else "||"
    return functools.reduce(lambda left, right: cel.BoolOp(glue, left, right), nodes)


def _field(name: str, condition: Any, counter: list[int]) -> cel.Node:
    target = cel.Name((name,))
    if not isinstance(condition, Mapping):
        _count(counter)
        if isinstance(condition, list):
            raise cel.CelError(f"{name}: a list is not a value (use {{$in: [...]}})")
        return cel.Compare("==", target, cel.Literal(_scalar(name, condition)))
    if not condition:
        raise cel.CelError(f"{name}: an operator object needs at least one of {', '.join(OPERATORS)}")
    parts: list[cel.Node] = []
    for op, operand in condition.items():
        _count(counter)
        if op in COMPARISONS:
            parts.append(cel.Compare(COMPARISONS[op], target, cel.Literal(_scalar(name, operand))))
        elif op in LIST_OPERATORS:
            if not isinstance(operand, list):
                raise cel.CelError(f"{name}: {op} needs a list of values, not {_kind(operand)}")
            if len(operand) > cel.MAX_LIST_ITEMS:
                raise cel.CelError(f"{name}: {op} lists are limited to {cel.MAX_LIST_ITEMS} items")
            listed = cel.ListOf(tuple(cel.Literal(_scalar(name, v)) for v in operand))
            member: cel.Node = cel.Compare("in", target, listed)
            parts.append(member if op == "$in" else cel.Not(member))
        else:
            shown = str(op)[:40]
            raise cel.CelError(f"{name}: unknown operator {shown!r} (supported: {', '.join(OPERATORS)})")
    return _all(parts)


def _scalar(name: str, value: Any) -> Any:
    """A JSON value usable as a CEL literal; dates (in Python callers) become RFC 3339 text."""
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise cel.CelError(f"{name}: numbers must be finite")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise cel.CelError(f"{name}: expected a string, number, boolean or null, not {_kind(value)}")


def _count(counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_CLAUSES:
        raise cel.CelError(f"a filter may hold at most {MAX_CLAUSES} comparisons")


def _all(parts: list[cel.Node]) -> cel.Node:
    return functools.reduce(lambda left, right: cel.BoolOp("&&", left, right), parts)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__
