"""/api/collections/<c>[/<id>]: CRUD over the records service; /api/collections/<c>/bulk: update/delete by
filter; /api/collections: the collections (admins).

"bulk" is never a record id (ids are 15 characters), and routing prefers the fixed segment.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, request_info, services
from alyx.blueprints.access import admin_required
from alyx.errors import bad_request
from alyx.fields.base import FieldSpec
from alyx.fields.registry import lookup
from alyx.http import json_body, json_response
from alyx.multipart import record_input
from alyx.schema import CollectionSpec

bp = Blueprint("collections", __name__, url_prefix="/api/collections")


def describe_field(spec: FieldSpec) -> dict[str, Any]:
    """A field as the admin UI needs it: its settings and the form widget its type names."""
    return {"name": spec.name, "type": spec.type, "widget": lookup(spec.type).widget, "required": spec.required,
            "unique": spec.unique, "default": spec.default, "min": spec.min, "max": spec.max,
            "pattern": spec.pattern, "values": list(spec.values), "collection": spec.collection,
            **lookup(spec.type).widget_settings(spec)}


def describe_collection(spec: CollectionSpec, count: int) -> dict[str, Any]:
    return {"name": spec.name, "auth": spec.auth, "count": count,
            "fields": [describe_field(f) for f in spec.public_fields],
            "indexes": [{"fields": list(i.fields), "unique": i.unique, "name": i.name} for i in spec.indexes],
            "rules": spec.rules}


@bp.get("")
@admin_required("The collection list")
def list_collections() -> Response:
    """Every collection with its fields (type, settings, form widget), indexes, rules and record count."""
    svc = services()
    items = []
    for name, spec in svc.schema.collections.items():
        page = svc.records.list(name, {"perPage": "1"}, current_principal(), request_info())
        items.append(describe_collection(spec, page["totalItems"]))
    return json_response({"items": items})


@bp.get("/<collection>")
def list_records(collection: str) -> Response:
    page = services().records.list(collection, request.args, current_principal(), request_info())
    return json_response(page)


@bp.post("/<collection>")
def create_record(collection: str) -> Response:
    records = services().records
    spec = records.collection(collection).spec  # 404 for an unknown collection before looking at the body
    body, files = record_input(spec)  # JSON, or multipart/form-data with files
    created = records.create(collection, body, current_principal(), request_info(body), files=files)
    return json_response(created, 201)


@bp.get("/<collection>/<record_id>")
def view_record(collection: str, record_id: str) -> Response:
    record = services().records.view(collection, record_id, request.args, current_principal(), request_info())
    return json_response(record)


@bp.patch("/<collection>/<record_id>")
def update_record(collection: str, record_id: str) -> Response:
    records = services().records
    spec = records.collection(collection).spec
    body, files = record_input(spec)
    updated = records.update(collection, record_id, body, current_principal(), request_info(body), files=files)
    return json_response(updated)


@bp.delete("/<collection>/<record_id>")
def delete_record(collection: str, record_id: str) -> Response:
    services().records.delete(collection, record_id, current_principal(), request_info())
    return Response(status=204)


def _bulk_body(*keys: str) -> dict[str, Any]:
    """The JSON object of a bulk write: exactly ``keys`` (a filter, and for updates the changes)."""
    body = json_body()
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    unknown = sorted(set(body) - set(keys))
    missing = [key for key in keys if key not in body]
    if unknown or missing:
        problems = {key: ["unknown key"] for key in unknown} | {key: ["required"] for key in missing}
        raise bad_request(f"A bulk write takes a JSON object with {' and '.join(keys)}.", problems)
    return body


@bp.patch("/<collection>/bulk")
def update_records(collection: str) -> Response:
    """``{"filter": ..., "changes": {...}}`` → the changes applied to every match the update rule allows."""
    records = services().records
    records.collection(collection)
    body = _bulk_body("filter", "changes")
    if not isinstance(body["changes"], dict):
        raise bad_request("changes must be a JSON object of the fields to set.", {"changes": ["expected an object"]})
    count = records.update_many(collection, body["filter"], body["changes"], current_principal(),
                                request_info(body["changes"]))
    return json_response({"count": count})


@bp.delete("/<collection>/bulk")
def delete_records(collection: str) -> Response:
    """``{"filter": ...}`` → every match the delete rule allows, deleted."""
    records = services().records
    records.collection(collection)
    body = _bulk_body("filter")
    return json_response({"count": records.delete_many(collection, body["filter"], current_principal(),
                                                       request_info())})
