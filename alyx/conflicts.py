"""Database constraint violations (unique, restrict relations) → 409 errors naming the field or relation.

Moved out of alyx/records.py unchanged; the records service raises these from its write transaction.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import peewee

from alyx.errors import AlyxError
from alyx.models import index_definitions
from alyx.schema import CollectionSpec


def integrity_error(spec: CollectionSpec, exc: peewee.IntegrityError) -> AlyxError:
    """A database constraint violation → 409 naming the field (unique) or the relation (restrict)."""
    text = str(exc)
    if "UNIQUE" in text.upper() or "duplicate key" in text:
        names = _unique_fields(spec, text)
        label = ", ".join(names) or "a unique field"
        details = {name: ["Value must be unique."] for name in names} or {"record": ["Value must be unique."]}
        return AlyxError("conflict", f"Another record in {spec.name!r} already has this {label}.", 409, details)
    if "FOREIGN KEY" in text.upper() or "foreign key" in text:
        return AlyxError("conflict", f"The record is still referenced by other records ({text.splitlines()[0]}).",
                         409)
    return AlyxError("conflict", "The write conflicts with a database constraint.", 409)


class WriteTransaction:
    """A record write's transaction (``Database.write()``) whose constraint violations, raised inside
    it or at its commit, become 409s (``integrity_error``)."""

    def __init__(self, transaction: Any, spec: CollectionSpec, begins: Iterable[Callable[[], None]] = ()) -> None:
        self.ctx, self.spec, self.begins = transaction, spec, begins

    def __enter__(self) -> None:
        self.ctx.__enter__()
        for begin in self.begins:  # Records.on_begin: locks taken before any row lock
            begin()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            suppressed = self.ctx.__exit__(exc_type, exc, tb)
        except peewee.IntegrityError as late:
            exc = late
            suppressed = False
        if isinstance(exc, peewee.IntegrityError):
            raise integrity_error(self.spec, exc) from None
        return bool(suppressed)

def _unique_fields(spec: CollectionSpec, text: str) -> list[str]:
    match = re.search(rf"\bci_{re.escape(spec.name)}_(\w+)", text)  # a case-insensitive index (auth email)
    if match:
        return [match.group(1)]
    match = re.search(r"UNIQUE constraint failed: (.+)", text)
    if match:
        return [part.split(".")[-1].strip() for part in match.group(1).split(",")]
    match = re.search(r'unique constraint "([^"]+)"', text)
    if match:
        for idx_name, cols, _ in index_definitions(spec):
            if idx_name == match.group(1):
                return list(cols)
        if match.group(1).endswith("_pkey"):
            return ["id"]
    return []
