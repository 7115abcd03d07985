"""The file type: names of files attached to a record (blobs in alyx/storage/, uploads in alyx/record_files.py)."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee
from marshmallow import fields

from alyx import cel
from alyx.fields.base import FieldSpec, FieldType, Models, NoEquality, SettingsProblem
from alyx.fields.json import json_text
from alyx.fields.strict import StrictString
from alyx.units import parse_size_bytes

DEFAULT_MAX_SIZE = 5 * 1024 * 1024
DEFAULT_MAX_FILES = 99  # of a multiple field
THUMB_RE = re.compile(r"(\d{1,4})x(\d{1,4})(f?)")
MIME_RE = re.compile(r"(\*|[a-z0-9][a-z0-9.+-]*)/(\*|[a-z0-9][a-z0-9.+-]*)")
MAX_THUMB_SIDE = 2048


@dataclass(frozen=True)
class FileSettings:
    """A file field's settings, as uploads and downloads use them."""

    multiple: bool = False
    max_size: int = DEFAULT_MAX_SIZE  # bytes per file
    mime_types: tuple[str, ...] = ()  # empty: any type
    max_files: int = 1
    protected: bool = False
    thumbs: tuple[str, ...] = ()


def file_settings(spec: FieldSpec) -> FileSettings:
    """The settings of a file field (``FieldSpec.extra``, filled by FileType.own_settings)."""
    multiple = bool(spec.setting("multiple", False))
    return FileSettings(multiple, spec.setting("max_size", DEFAULT_MAX_SIZE), spec.setting("mime_types", ()),
                        spec.setting("max_files", DEFAULT_MAX_FILES if multiple else 1),
                        bool(spec.setting("protected", False)), spec.setting("thumbs", ()))


def thumb_box(size: str) -> tuple[int, int, bool] | None:
    """``100x100`` → (100, 100, False: crop); ``100x100f`` → fit; ``100x0``/``0x100``: keep the ratio."""
    m = THUMB_RE.fullmatch(size)
    if not m:
        return None
    width, height = int(m.group(1)), int(m.group(2))
    if (width == 0 and height == 0) or width > MAX_THUMB_SIDE or height > MAX_THUMB_SIDE:
        return None
    return width, height, bool(m.group(3))


class FileNamesField(peewee.TextField):
    """A text column holding one name, or a JSON list of names when ``multiple``; either form reads
    back as the field's current shape, so switching ``multiple`` on or off needs no migration."""

    def __init__(self, multiple: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiple = multiple

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return json_text(list(value)) if self.multiple else (value[0] if value else None)
        return json_text([value]) if self.multiple else value

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        names = json.loads(value) if isinstance(value, str) and value.startswith("[") else [value]
        if self.multiple:
            return [str(n) for n in names]
        return str(names[0]) if names else None


class FileType(FieldType):
    """One file name (a string) or, with ``multiple: true``, a list of names. Clients upload with
    multipart/form-data; in JSON they may only keep or drop names the record already has."""

    name = "file"
    rank = 160
    family = cel.Family.OPAQUE
    options = frozenset({"multiple", "max_size", "mime_types", "max_files", "protected", "thumbs"})
    sortable = False
    ts_type, python_hint, go_type = "string", "str", "string"
    client_doc = "stored file name(s); download from the URL files.url(collection, id, name) builds"
    client_upload = True

    def column(self, spec: FieldSpec, models: Models, collection: str) -> peewee.Field:
        return FileNamesField(multiple=file_settings(spec).multiple, null=True)

    def convert(self, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value)

    def validator(self, spec: FieldSpec, required: bool = False) -> fields.Field[Any]:
        # never "required" here: a required file may arrive as an upload (checked in record_files)
        return self.marshmallow(spec, required=False, allow_none=not spec.required)

    def marshmallow(self, spec: FieldSpec, required: bool, allow_none: bool) -> fields.Field[Any]:
        if file_settings(spec).multiple:
            return fields.List(StrictString(), required=required, allow_none=allow_none)
        return StrictString(required=required, allow_none=allow_none)

    def default_problem(self, spec: FieldSpec, value: Any) -> str | None:
        return "file fields take no default"

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        if file_settings(spec).multiple:
            return {"type": "array", "items": {"type": "string"}, "description": "stored file names"}
        return {"type": "string", "description": "the stored file name"}

    def client_list(self, spec: FieldSpec) -> bool:
        return file_settings(spec).multiple

    def query_value(self, raw: str) -> Any:
        raise NoEquality(raw)

    def settings_problem(self, settings: Mapping[str, Any]) -> SettingsProblem | None:
        for flag in ("multiple", "protected"):
            if flag in settings and not isinstance(settings[flag], bool):
                return SettingsProblem(f".{flag}", f"{flag} must be true or false", flag)
        if "max_size" in settings:
            try:
                if parse_size_bytes(settings["max_size"]) <= 0:
                    raise ValueError("zero")
            except ValueError:
                return SettingsProblem(".max_size", f"max_size must be a size in bytes or like 5MB, got "
                                       f"{settings['max_size']!r}", "max_size")
        max_files = settings.get("max_files")
        if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
            return SettingsProblem(".max_files", f"max_files must be a whole number >= 1, got {max_files!r}",
                                   "max_files")
        if max_files is not None and max_files > 1 and not settings.get("multiple"):
            return SettingsProblem(".max_files", "max_files above 1 needs multiple: true", "max_files")
        mime_types = settings.get("mime_types")
        if mime_types is not None and (not isinstance(mime_types, list) or not all(
                isinstance(m, str) and MIME_RE.fullmatch(m) for m in mime_types)):
            return SettingsProblem(".mime_types", "mime_types must be a list like [image/*, application/pdf]",
                                   "mime_types")
        thumbs = settings.get("thumbs")
        if isinstance(thumbs, list) and any(isinstance(t, int) and not isinstance(t, bool) for t in thumbs):
            return SettingsProblem(".thumbs", 'quote sizes that start with 0x ("0x100"): YAML reads them as hex '
                                   "numbers", "thumbs")
        if thumbs is not None and (not isinstance(thumbs, list) or not all(
                isinstance(t, str) and thumb_box(t) for t in thumbs)):
            return SettingsProblem(".thumbs", f"thumbs must be a list of sizes like 100x100, 100x0, 0x100 or "
                                   f"100x100f (each side at most {MAX_THUMB_SIDE})", "thumbs")
        return None

    def own_settings(self, settings: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        out: list[tuple[str, Any]] = []
        for key in sorted(settings):
            value = settings[key]
            if key == "max_size":
                value = parse_size_bytes(value)
            elif isinstance(value, list):
                value = tuple(value)
            out.append((key, value))
        return tuple(out)
