"""What a name means to the compiler: a column and its coercer (from the resolver), and literals made
comparable with it."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

import peewee

from alyx.cel.nodes import CelError, Literal


class Family(enum.Enum):
    """Which values a column holds, as far as comparisons go: columns of one family compare with each
    other, text columns take the string methods, bool columns are conditions, opaque ones (e.g. JSON values) only
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
