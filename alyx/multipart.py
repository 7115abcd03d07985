"""Record writes sent as multipart/form-data: form values (or a ``@json`` part) become the same body
a JSON request has, file parts become uploads (FileInput). Werkzeug spools file parts to temporary
files as they arrive, so a file is never held whole in memory; ``server.max_body_bytes`` caps the
request (413)."""
from __future__ import annotations

from typing import Any

import orjson
from flask import request

from alyx import cel
from alyx.errors import AlyxError
from alyx.fields.registry import lookup
from alyx.http import json_body
from alyx.record_files import JSON_PART, FileInput, Upload
from alyx.schema import CollectionSpec

MAX_JSON_PART = 1024 * 1024


def record_input(spec: CollectionSpec) -> tuple[Any, FileInput | None]:
    """The body of a create or update, JSON or multipart; with multipart also its files."""
    if request.mimetype != "multipart/form-data":
        return json_body(), None
    if not request.mimetype_params.get("boundary"):
        raise AlyxError("unsupported_media_type", "A multipart/form-data body needs its boundary parameter; send "
                        "JSON (Content-Type: application/json) or a real multipart form.", 415)
    text_fields = {f.name for f in spec.public_fields if lookup(f.type).family is cel.Family.TEXT}
    body: dict[str, Any] = {}
    files = FileInput()
    json_part = request.form.get(JSON_PART)
    if json_part is None and JSON_PART in request.files:
        json_part = request.files[JSON_PART].stream.read(MAX_JSON_PART + 1).decode("utf-8", "replace")
        if len(json_part) > MAX_JSON_PART:
            raise AlyxError("too_large", f"The {JSON_PART} part is larger than {MAX_JSON_PART} bytes.", 413)
    if json_part is not None:
        body = _json_object(json_part)
    for key, values in request.form.lists():
        if key == JSON_PART:
            continue
        if key.endswith("-"):
            for value in values:
                files.removals.setdefault(key[:-1], []).extend(_names(value))
            continue
        parsed = [v if key in text_fields else _form_value(v) for v in values]
        body[key] = parsed[0] if len(parsed) == 1 else parsed
    for key, parts in request.files.lists():
        if key == JSON_PART:
            continue
        append = key.endswith("+")
        for part in parts:
            if not part.filename:
                continue  # an empty file input of an HTML form
            files.uploads.append(Upload(key.removesuffix("+"), part.filename, part.stream, append))
    return body, files


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise AlyxError("invalid_json", f"The {JSON_PART} part is not valid JSON: {exc}.", 400) from None
    if not isinstance(value, dict):
        raise AlyxError("invalid_json", f"The {JSON_PART} part must be a JSON object.", 400)
    return value


def _form_value(text: str) -> Any:
    """A form value of a non-text field: its JSON reading (``3``, ``true``, ``null``), else the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _names(text: str) -> list[str]:
    """``field-`` values: one name, or a JSON list of names."""
    value = _form_value(text)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [text]
