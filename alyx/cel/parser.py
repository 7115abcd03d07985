"""CEL text → the AST of the supported subset (cel-python's lark parser), with bounded size and depth."""
from __future__ import annotations

import functools
import math
import sys
from typing import Any

import lark
from celpy import celparser
from celpy.evaluation import celstr

from alyx.cel.nodes import BoolOp, CelError, Compare, ListOf, Literal, Method, Name, Node, Not, nesting

MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 64  # brackets in the text
MAX_NESTING = 20  # levels of the AST (SQLite's parser overflows near 30 levels of generated SQL)
MAX_LIST_ITEMS = 500
COMPARISONS = {"relation_eq": "==", "relation_ne": "!=", "relation_lt": "<", "relation_le": "<=",
               "relation_gt": ">", "relation_ge": ">=", "relation_in": "in"}
STRING_METHODS = ("contains", "startsWith", "endsWith")
MAX_NUMBER = sys.float_info.max  # number literals are finite doubles in magnitude (ints beyond 64 bits are kept)


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
        if t in ("INT_LIT", "UINT_LIT", "FLOAT_LIT"):
            return Literal(number(tok.type, tok.value))
        if t == "STRING_LIT":
            try:
                text = str(celstr(tok))
                text.encode("utf-8")
            except (ValueError, UnicodeEncodeError):  # \U00110000 (past Unicode), a lone surrogate escape
                raise CelError("string literals must be valid Unicode (an escape past U+10FFFF or a lone "
                               "surrogate is not)") from None
            return Literal(text)
        if t == "BOOL_LIT":
            return Literal(tok.value == "true")
        if t == "NULL_LIT":
            return Literal(None)
        if t == "IDENT":
            return Name((str(tok.value),))
        raise CelError(f"unsupported literal {tok.value[:40]!r}")


def number(kind: str, text: str) -> int | float:
    """A number literal's value; CelError when it is beyond a double (e.g. 400 digits) or not finite."""
    if kind == "FLOAT_LIT":
        value: int | float = float(text)
        finite = math.isfinite(value)
    else:
        digits = text.rstrip("uU") if kind == "UINT_LIT" else text
        value = int(digits, 0) if digits.lower().startswith(("0x", "-0x")) else int(digits)
        finite = abs(value) <= MAX_NUMBER
    if not finite:
        raise CelError(f"the number literal {text[:20]}{'...' if len(text) > 20 else ''} is out of range "
                       f"(numbers are at most {MAX_NUMBER:.6g} in magnitude)")
    return value
