"""A CEL subset shared by `filter=` and access rules: parse once, push down to SQL, or evaluate.

Knows nothing of collections: a resolver decides what each name means (a column with its coercer,
or a bound value such as ``auth.id``), so whitelisting lives in one place and no text ever reaches
SQL. ``nodes``: the AST; ``parser``: text → AST; ``columns``: what the resolver returns;
``sql``: the push-down; ``evaluate``: the same semantics in Python.
"""
from __future__ import annotations

from alyx.cel.columns import Coercer, Column, Family, Resolver, coerce_for
from alyx.cel.evaluate import Evaluator, evaluate_compare, evaluate_method
from alyx.cel.nodes import (
    ERROR,
    OPERATORS,
    BoolOp,
    CelError,
    Compare,
    ListOf,
    Literal,
    Method,
    Name,
    Node,
    Not,
    NotPushable,
    NoValueType,
    chain,
    names_in,
    nesting,
)
from alyx.cel.parser import (
    COMPARISONS,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_LIST_ITEMS,
    MAX_NESTING,
    STRING_METHODS,
    parse,
)
from alyx.cel.sql import FALSE_SQL, TRUE_SQL, SqlCompiler

__all__ = [
    "COMPARISONS", "ERROR", "FALSE_SQL", "MAX_DEPTH", "MAX_EXPRESSION_LENGTH", "MAX_LIST_ITEMS", "MAX_NESTING",
    "OPERATORS", "STRING_METHODS", "TRUE_SQL", "BoolOp", "CelError", "Coercer", "Column", "Compare", "Evaluator",
    "Family", "ListOf", "Literal", "Method", "Name", "Node", "Not", "NotPushable", "NoValueType", "Resolver",
    "SqlCompiler", "chain", "coerce_for", "evaluate_compare", "evaluate_method", "names_in", "nesting", "parse",
]
