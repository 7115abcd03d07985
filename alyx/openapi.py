"""The OpenAPI 3 document: one path pair per collection, schemas derived from schema.yaml."""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx import __version__
from alyx.config import Config
from alyx.fields.registry import lookup
from alyx.openapi_files import add_file_paths
from alyx.schema import CollectionSpec, FieldSpec, Schema

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}},
}
ERROR_STATUSES = {"400": "Bad query or body", "401": "Missing or invalid token", "403": "Denied by a rule",
                  "404": "Unknown collection or record", "409": "Unique or relation conflict",
                  "413": "Body too large", "415": "Body is not JSON", "422": "Validation failed",
                  "429": "Rate limited"}


def field_schema(f: FieldSpec) -> dict[str, Any]:
    """JSON Schema of one field's value."""
    return lookup(f.type).json_schema(f)


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _record_schemas(spec: CollectionSpec) -> dict[str, dict[str, Any]]:
    writable = {f.name: field_schema(f) for f in spec.public_fields}
    required = [f.name for f in spec.public_fields if f.required and f.default is None]
    system = {"id": {"type": "string", "pattern": "^[a-z0-9]{15}$"},
              "created_at": {"type": "string", "format": "date-time"},
              "updated_at": {"type": "string", "format": "date-time"}}
    readable = {**system, **{name: {**s, "nullable": True} if "type" in s else s for name, s in writable.items()}}
    name = _title(spec.name)
    create = {"type": "object", "properties": {"id": system["id"], **writable}, "additionalProperties": False}
    if required:
        create["required"] = required
    return {
        f"{name}Record": {"type": "object", "properties": readable, "required": list(system)},
        f"{name}Create": create,
        f"{name}Update": {"type": "object", "properties": writable, "additionalProperties": False},
        f"{name}List": _list_envelope(f"{name}Record"),
    }


def _list_envelope(record_ref: str) -> dict[str, Any]:
    counters = {key: {"type": "integer"} for key in ("page", "perPage", "totalItems", "totalPages")}
    items = {"type": "array", "items": {"$ref": f"#/components/schemas/{record_ref}"}}
    return {"type": "object", "required": ["items", *counters], "properties": {"items": items, **counters}}


def _record_links(collection: str) -> dict[str, Any]:
    """OpenAPI links from a created record to its view/update/delete (used by stateful fuzzing)."""
    by_id = {"id": "$response.body#/id"}
    return {f"{verb.title()}Record": {"operationId": f"{verb}_{collection}", "parameters": by_id}
            for verb in ("view", "update", "delete")}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"description": ERROR_STATUSES[code], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for code in codes}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


LIST_PARAMETERS = [
    {"name": "filter", "in": "query", "schema": {"type": "string"},
     "description": 'CEL expression, e.g. status == "published" && views > 10'},
    {"name": "sort", "in": "query", "schema": {"type": "string"}, "description": "e.g. -created_at,title"},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "perPage", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "fields", "in": "query", "schema": {"type": "string"}, "description": "e.g. id,title"},
    {"name": "expand", "in": "query", "schema": {"type": "string"}, "description": "relation fields to expand"},
    {"name": "skipTotal", "in": "query", "schema": {"type": "boolean"}},
]


def build_openapi(schema: Schema, config: Config) -> dict[str, Any]:
    """The whole OpenAPI document as a dict."""
    api = APISpec(title="Alyx API", version=__version__, openapi_version="3.0.3",
                  info={"description": f"REST API of the collections in {config.schema_path.name}."})
    api.components.schema("Error", ERROR_SCHEMA)
    api.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for spec in schema.collections.values():
        for name, component in _record_schemas(spec).items():
            api.components.schema(name, component)
        title = _title(spec.name)
        tag = spec.name
        api.path(path=f"/api/collections/{spec.name}", operations={
            "get": {"tags": [tag], "summary": f"List {spec.name}", "operationId": f"list_{spec.name}",
                    "parameters": LIST_PARAMETERS,
                    "responses": {"200": {"description": "A page of records", "content": _json(f"{title}List")},
                                  **_errors("400", "401")}},
            "post": {"tags": [tag], "summary": f"Create a {spec.name} record", "operationId": f"create_{spec.name}",
                     "requestBody": {"required": True, "content": _json(f"{title}Create")},
                     "responses": {"201": {"description": "Created", "content": _json(f"{title}Record"),
                                           "links": _record_links(spec.name)},
                                   **_errors("400", "401", "403", "409", "413", "415", "422")}},
        })
        id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
        api.path(path=f"/api/collections/{spec.name}/{{id}}", operations={
            "get": {"tags": [tag], "summary": f"View a {spec.name} record", "operationId": f"view_{spec.name}",
                    "parameters": id_param + [p for p in LIST_PARAMETERS if p["name"] in ("fields", "expand")],
                    "responses": {"200": {"description": "The record", "content": _json(f"{title}Record")},
                                  **_errors("400", "401", "404")}},
            "patch": {"tags": [tag], "summary": f"Update a {spec.name} record", "operationId": f"update_{spec.name}",
                      "parameters": id_param, "requestBody": {"required": True, "content": _json(f"{title}Update")},
                      "responses": {"200": {"description": "Updated", "content": _json(f"{title}Record")},
                                    **_errors("400", "401", "403", "404", "409", "413", "415", "422")}},
            "delete": {"tags": [tag], "summary": f"Delete a {spec.name} record", "operationId": f"delete_{spec.name}",
                       "parameters": id_param,
                       "responses": {"204": {"description": "Deleted"}, **_errors("401", "403", "404", "409")}},
        })
    api.path(path="/api/health", operations={"get": {"summary": "Health", "operationId": "health",
                                                       "responses": {"200": {"description": "OK"}}}})
    return add_file_paths(api.to_dict(), schema)  # multipart bodies of file fields, /api/files/*
