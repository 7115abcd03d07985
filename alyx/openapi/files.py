"""The file parts of the OpenAPI document: multipart/form-data bodies of collections with file
fields, the download path and the file-token path."""
from __future__ import annotations

import copy
from typing import Any

from alyx.fields.file import file_settings
from alyx.record_files import JSON_PART
from alyx.schema import Schema

ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def add_file_paths(doc: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """``doc`` (an OpenAPI dict) with multipart bodies for file fields and the /api/files paths."""
    for spec in schema.collections.values():
        file_fields = [f for f in spec.public_fields if f.type == "file"]
        if not file_fields:
            continue
        for path, verb in ((f"/api/collections/{spec.name}", "post"), (f"/api/collections/{spec.name}/{{id}}",
                                                                       "patch")):
            body = doc["paths"][path][verb]["requestBody"]["content"]
            ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            properties = copy.deepcopy(doc["components"]["schemas"][ref].get("properties", {}))
            for f in file_fields:
                binary = {"type": "string", "format": "binary"}
                settings = file_settings(f)
                described = {"type": "array", "items": binary} if settings.multiple else binary
                properties[f.name] = {**described, "description": _describe(settings.max_size, settings.mime_types)}
                if verb == "patch":
                    properties[f"{f.name}+"] = {**described, "description": "files to add"}
                    properties[f"{f.name}-"] = {"type": "array", "items": {"type": "string"},
                                                "description": "stored names to remove"}
            properties[JSON_PART] = {"type": "string", "description": "the other fields as one JSON object"}
            body["multipart/form-data"] = {"schema": {"type": "object", "properties": properties}}
    name_params = [{"name": part, "in": "path", "required": True, "schema": {"type": "string"}}
                   for part in ("collection", "id", "name")]
    doc["paths"]["/api/files/{collection}/{id}/{name}"] = {"get": {
        "tags": ["files"], "summary": "Download a file (the collection's view rule applies)",
        "operationId": "download_file",
        "parameters": name_params + [
            {"name": "thumb", "in": "query", "schema": {"type": "string"},
             "description": "a size the field lists in thumbs: 100x100, 100x0, 0x100, 100x100f"},
            {"name": "token", "in": "query", "schema": {"type": "string"},
             "description": "from POST /api/files/token (required for protected files)"}],
        "responses": {"200": {"description": "The file", "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}},
            "206": {"description": "Part of the file (Range)"}, "304": {"description": "Not modified"},
            **{code: {"description": text, "content": ERROR_REF} for code, text in
               (("400", "Thumbnail size not offered"), ("401", "Protected file without a valid token"),
                ("404", "Unknown or hidden record or file"), ("416", "Range not satisfiable"))}}}}
    doc["paths"]["/api/files/token"] = {"post": {
        "tags": ["files"], "summary": "A short-lived token for protected files", "operationId": "file_token",
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "The token", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"token": {"type": "string"}, "expires_in": {"type": "integer"}}}}}},
            "401": {"description": "Not signed in", "content": ERROR_REF}}}}
    return doc


def _describe(max_size: int, mime_types: tuple[str, ...]) -> str:
    return f"at most {max_size} bytes" + (f"; {', '.join(mime_types)}" if mime_types else "")
