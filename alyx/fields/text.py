"""The text type: a string meant to be long (stored and checked like string)."""
from __future__ import annotations

from alyx.fields.string import StringType


class TextType(StringType):
    """Long text; the same settings and checks as string."""

    name = "text"
    widget = "textarea"
    rank = 20
