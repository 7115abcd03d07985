"""The AST of the CEL subset, its errors and the ERROR value, and walks over it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final


class CelError(ValueError):
    """The expression is not valid CEL, or uses something this dialect does not support."""


class NotPushable(CelError):
    """Valid, but this part cannot become SQL (e.g. `auth.id in doc.editors` on a json list).

    Filters refuse such expressions (400); access rules fall back to evaluating them per record.
    """


class NoValueType:
    """The value of a name that has none for this caller (``auth.id`` when anonymous): a CEL error value."""

    _instance: NoValueType | None = None

    def __new__(cls) -> NoValueType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ERROR"


ERROR: Final[NoValueType] = NoValueType()


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


#: The comparison operators on plain values (SQL expressions overload them the same way).
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
