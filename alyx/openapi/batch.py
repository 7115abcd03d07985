"""The OpenAPI path of POST /api/batch (alyx/batch.py): its request and response bodies."""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx.batch import METHODS
from alyx.openapi.components import ANY_OBJECT, INTEGER, errors, json_request, nullable, obj, ref, response


def batch_schemas(max_operations: int) -> dict[str, dict[str, Any]]:
    """The batch's request (at most ``max_operations`` operations) and its list of results."""
    operation = obj({
        "method": {"type": "string", "enum": list(METHODS),
                   "description": "POST: create, PATCH: update, DELETE: delete, PUT: upsert (by the body's id)"},
        "url": {"type": "string", "pattern": r"^/api/collections/[a-z][a-z0-9_]{0,62}(/[A-Za-z0-9]{1,64})?$",
                "description": "/api/collections/<collection> (POST, PUT) or /api/collections/<collection>/<id> "
                               "(PATCH, DELETE); no query string"},
        "body": {**ANY_OBJECT, "nullable": True, "description": "The record's fields (JSON only; no body on DELETE)"},
    }, ["method", "url"], closed=True)
    return {
        "BatchOperation": operation,
        "BatchRequest": obj({"requests": {"type": "array", "items": ref("BatchOperation"), "minItems": 1,
                                          "maxItems": max_operations}}, ["requests"], closed=True),
        "BatchResult": obj({"status": INTEGER, "body": nullable(ANY_OBJECT)}, ["status", "body"]),
        "BatchResults": {"type": "array", "items": ref("BatchResult")},
    }


def add_batch_path(api: APISpec) -> None:
    """POST /api/batch."""
    api.path(path="/api/batch", operations={"post": {
        "tags": ["batch"], "summary": "Several record writes in one transaction, all or nothing",
        "operationId": "run_batch",
        "description": "Each operation runs as its own request would (the caller's rules, sync hooks, "
                       "validation) inside one transaction; realtime changes and async hooks follow the commit. "
                       "The first failing operation rolls the whole batch back and answers with its own status "
                       "and code, `details: {index, error}` naming it (see docs/batch.md).",
        "requestBody": json_request("BatchRequest"),
        "responses": {"200": response("The result of each operation, in order", "BatchResults"),
                      **errors("400", "401", "403", "404", "409", "413", "415", "422", "429",
                               notes={"413": "More operations than api.max_batch, or the body is too large"})}}})
