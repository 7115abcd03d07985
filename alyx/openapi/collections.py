"""The OpenAPI paths of the collections: one path pair per collection, schemas derived from schema.yaml."""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx.fields.registry import lookup
from alyx.openapi.components import errors as _errors
from alyx.openapi.components import json_content as _json
from alyx.schema import CollectionSpec, FieldSpec


def field_schema(f: FieldSpec) -> dict[str, Any]:
    """JSON Schema of one field's value."""
    return lookup(f.type).json_schema(f)


def title(name: str) -> str:
    """A collection name as the stem of its component names (`blog_posts` → `BlogPosts`)."""
    return "".join(part.capitalize() for part in name.split("_"))


def record_schemas(spec: CollectionSpec) -> dict[str, dict[str, Any]]:
    """The Record, Create, Update and List component schemas of a collection."""
    writable = {f.name: field_schema(f) for f in spec.public_fields}
    required = [f.name for f in spec.public_fields if f.required and f.default is None]
    system = {"id": {"type": "string", "pattern": "^[a-z0-9]{15}$"},
              "created_at": {"type": "string", "format": "date-time"},
              "updated_at": {"type": "string", "format": "date-time"}}
    readable = {**system, **{name: {**s, "nullable": True} if "type" in s else s for name, s in writable.items()}}
    name = title(spec.name)
    create = {"type": "object", "properties": {"id": system["id"], **writable}, "additionalProperties": False}
    if required:
        create["required"] = required
    return {
        f"{name}Record": {"type": "object", "properties": readable, "required": list(system)},
        f"{name}Create": create,
        f"{name}Update": {"type": "object", "properties": writable, "additionalProperties": False},
        f"{name}List": _list_envelope(f"{name}Record"),
        f"{name}BulkUpdate": {"type": "object", "required": ["filter", "changes"], "additionalProperties": False,
                              "properties": {"filter": FILTER_SCHEMA,
                                             "changes": {"$ref": f"#/components/schemas/{name}Update"}}},
        f"{name}BulkDelete": {"type": "object", "required": ["filter"], "additionalProperties": False,
                              "properties": {"filter": FILTER_SCHEMA}},
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


FILTER_DESCRIPTION = ('CEL expression, e.g. status == "published" && views > 10, or a filter object as JSON, '
                      'e.g. {"views": {"$gt": 10}} ($eq $ne $lt $lte $gt $gte $in $nin, $and, $or)')
FILTER_SCHEMA = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "object", "minProperties": 1}],
                 "description": FILTER_DESCRIPTION}
COUNT_SCHEMA = {"type": "object", "required": ["count"], "properties": {"count": {"type": "integer", "minimum": 0}}}
LIST_PARAMETERS = [
    {"name": "filter", "in": "query", "schema": {"type": "string"}, "description": FILTER_DESCRIPTION},
    {"name": "sort", "in": "query", "schema": {"type": "string"}, "description": "e.g. -created_at,title"},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "perPage", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "fields", "in": "query", "schema": {"type": "string"}, "description": "e.g. id,title"},
    {"name": "expand", "in": "query", "schema": {"type": "string"}, "description": "relation fields to expand"},
    {"name": "skipTotal", "in": "query", "schema": {"type": "boolean"}},
]


def add_collection(api: APISpec, spec: CollectionSpec) -> None:
    """The component schemas and the list/create and view/update/delete paths of one collection."""
    for name, component in record_schemas(spec).items():
        api.components.schema(name, component)
    title_ = title(spec.name)
    tag = spec.name
    api.path(path=f"/api/collections/{spec.name}", operations={
        "get": {"tags": [tag], "summary": f"List {spec.name}", "operationId": f"list_{spec.name}",
                "parameters": LIST_PARAMETERS,
                "responses": {"200": {"description": "A page of records", "content": _json(f"{title_}List")},
                              **_errors("400", "401")}},
        "post": {"tags": [tag], "summary": f"Create a {spec.name} record", "operationId": f"create_{spec.name}",
                 "requestBody": {"required": True, "content": _json(f"{title_}Create")},
                 "responses": {"201": {"description": "Created", "content": _json(f"{title_}Record"),
                                       "links": _record_links(spec.name)},
                               **_errors("400", "401", "403", "409", "413", "415", "422")}},
    })
    api.path(path=f"/api/collections/{spec.name}/bulk", operations={
        "patch": {"tags": [tag], "summary": f"Update every {spec.name} record a filter matches",
                  "operationId": f"update_many_{spec.name}",
                  "requestBody": {"required": True, "content": _json(f"{title_}BulkUpdate")},
                  "responses": {"200": {"description": "How many were updated", "content": _json("Count")},
                                **_errors("400", "401", "403", "409", "413", "415", "422")}},
        "delete": {"tags": [tag], "summary": f"Delete every {spec.name} record a filter matches",
                   "operationId": f"delete_many_{spec.name}",
                   "requestBody": {"required": True, "content": _json(f"{title_}BulkDelete")},
                   "responses": {"200": {"description": "How many were deleted", "content": _json("Count")},
                                 **_errors("400", "401", "403", "409", "413", "415")}},
    })
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    api.path(path=f"/api/collections/{spec.name}/{{id}}", operations={
        "get": {"tags": [tag], "summary": f"View a {spec.name} record", "operationId": f"view_{spec.name}",
                "parameters": id_param + [p for p in LIST_PARAMETERS if p["name"] in ("fields", "expand")],
                "responses": {"200": {"description": "The record", "content": _json(f"{title_}Record")},
                              **_errors("400", "401", "404")}},
        "patch": {"tags": [tag], "summary": f"Update a {spec.name} record", "operationId": f"update_{spec.name}",
                  "parameters": id_param, "requestBody": {"required": True, "content": _json(f"{title_}Update")},
                  "responses": {"200": {"description": "Updated", "content": _json(f"{title_}Record")},
                                **_errors("400", "401", "403", "404", "409", "413", "415", "422")}},
        "delete": {"tags": [tag], "summary": f"Delete a {spec.name} record", "operationId": f"delete_{spec.name}",
                   "parameters": id_param,
                   "responses": {"204": {"description": "Deleted"}, **_errors("401", "403", "404", "409")}},
    })
