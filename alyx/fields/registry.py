"""The registry of field types: every module of alyx/fields/ is imported, and every FieldType
subclass that names a type is registered; lookup by type name."""
from __future__ import annotations

import importlib
import pkgutil

import alyx.fields
from alyx.fields.base import FieldType


def _discover() -> dict[str, FieldType]:
    for module in pkgutil.iter_modules(alyx.fields.__path__):  # support modules (base, strict, ...) too: harmless
        importlib.import_module(f"{alyx.fields.__name__}.{module.name}")
    found: list[type[FieldType]] = []
    pending = list(FieldType.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if "name" in vars(cls):
            found.append(cls)
    types: dict[str, FieldType] = {}
    for cls in sorted(found, key=lambda c: (c.rank, c.name)):
        if cls.name in types:
            raise RuntimeError(f"field type {cls.name!r} is defined twice ({type(types[cls.name]).__name__}, "
                               f"{cls.__name__})")
        types[cls.name] = cls()
    return types


TYPES: dict[str, FieldType] = _discover()
FIELD_TYPES: tuple[str, ...] = tuple(TYPES)
#: Every setting some type accepts (min, max, pattern, values, collection, on_delete, ...).
OPTIONS: frozenset[str] = frozenset().union(*(t.options for t in TYPES.values()))


def lookup(name: str) -> FieldType:
    """The field type called ``name``; ValueError for a name no module defines."""
    try:
        return TYPES[name]
    except KeyError:
        raise ValueError(f"unhandled field type {name}") from None


def accepting(option: str) -> tuple[str, ...]:
    """The names of the types that accept a setting (for "values only apply to select fields")."""
    return tuple(name for name, t in TYPES.items() if option in t.options)
