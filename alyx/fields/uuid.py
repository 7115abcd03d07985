"""The uuid type: a string that must be a UUID."""
from __future__ import annotations

import uuid
from typing import Any

from marshmallow import ValidationError

from alyx.fields.base import FieldSpec
from alyx.fields.string import StringType


def check_uuid(value: str) -> None:
    """Refuse a string that is not a UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValidationError("Not a valid UUID.") from None


class UuidType(StringType):
    """A UUID in any form ``uuid.UUID`` reads; no length or pattern settings; format ``uuid``."""

    name = "uuid"
    widget = "text"
    rank = 110
    options = frozenset()

    def checks(self, spec: FieldSpec) -> list[Any]:
        return [check_uuid]

    def format_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {"format": "uuid"}
