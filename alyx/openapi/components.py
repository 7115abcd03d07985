"""What every part of the OpenAPI document shares: the error shape, error responses, security, JSON content."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}},
}
ERROR_STATUSES = {"400": "Bad query or body", "401": "Missing or invalid token", "403": "Denied by a rule",
                  "404": "Unknown collection or record", "409": "Unique or relation conflict",
                  "413": "Body too large", "415": "Body is not JSON", "422": "Validation failed",
                  "429": "Rate limited", "502": "The function failed", "503": "No sandbox available",
                  "504": "The function timed out"}

BEARER = "bearer"
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "The `access_token` of /api/auth/login, /api/auth/register or /api/auth/refresh."}
# Security requirements. The document's default is OPTIONAL_TOKEN: every route reads a Bearer token
# when one is sent (a bad one is a 401) and rules decide; these override it per operation.
OPTIONAL_TOKEN: list[dict[str, list[str]]] = [{}, {BEARER: []}]
SIGNED_IN: list[dict[str, list[str]]] = [{BEARER: []}]
NO_TOKEN: list[dict[str, list[str]]] = []  # the route ignores any Authorization header

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
DATETIME = {"type": "string", "format": "date-time"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
ANY_VALUE: dict[str, Any] = {"nullable": True, "description": "Any JSON value."}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(name: str) -> dict[str, Any]:
    """A JSON body whose schema is the component ``name``."""
    return {"application/json": {"schema": ref(name)}}


def json_request(name: str, required: bool = True) -> dict[str, Any]:
    """A request body of the component schema ``name``."""
    return {"required": required, "content": json_content(name)}


def response(description: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A response, with a JSON body of the component ``name`` when given."""
    out: dict[str, Any] = {"description": description, **extra}
    if name is not None:
        out["content"] = json_content(name)
    return out


def errors(*codes: str, notes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Error responses in the one error shape; ``notes`` overrides the generic description of a status."""
    descriptions = {**ERROR_STATUSES, **(notes or {})}
    return {code: {"description": descriptions[code], "content": json_content("Error")} for code in codes}


def obj(properties: Mapping[str, Any], required: tuple[str, ...] | list[str] = (), closed: bool = False,
        **extra: Any) -> dict[str, Any]:
    """An object schema; ``closed`` forbids other properties (request bodies the server checks key by key)."""
    out: dict[str, Any] = {"type": "object", "properties": dict(properties), **extra}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def items_of(name: str, **more: Any) -> dict[str, Any]:
    """The `{"items": [...]}` envelope of the admin listings (no paging: a limit)."""
    return obj({"items": {"type": "array", "items": ref(name)}, **more}, ["items", *more])


def query_param(name: str, schema: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "schema": dict(schema)}
    if description:
        out["description"] = description
    return out


def path_param(name: str, schema: Mapping[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": dict(schema or STRING)}
    if description:
        out["description"] = description
    return out
