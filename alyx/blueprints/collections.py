"""/api/collections/<c>[/<id>]: CRUD over the records service; /api/collections: the collections (admins)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, request_info, services
from alyx.blueprints.access import admin_required
from alyx.fields.base import FieldSpec
from alyx.fields.registry import lookup
from alyx.http import json_body, json_response
from alyx.schema import CollectionSpec

bp = Blueprint("collections", __name__, url_prefix="/api/collections")


def describe_field(spec: FieldSpec) -> dict[str, Any]:
    """A field as the admin UI needs it: its settings and the form widget its type names."""
    return {"name": spec.name, "type": spec.type, "widget": lookup(spec.type).widget, "required": spec.required,
            "unique": spec.unique, "default": spec.default, "min": spec.min, "max": spec.max,
            "pattern": spec.pattern, "values": list(spec.values), "collection": spec.collection}


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
    records.collection(collection)  # 404 for an unknown collection before looking at the body
    body = json_body()
    created = records.create(collection, body, current_principal(), request_info(body))
    return json_response(created, 201)


@bp.get("/<collection>/<record_id>")
def view_record(collection: str, record_id: str) -> Response:
    record = services().records.view(collection, record_id, request.args, current_principal(), request_info())
    return json_response(record)


@bp.patch("/<collection>/<record_id>")
def update_record(collection: str, record_id: str) -> Response:
    records = services().records
    records.collection(collection)
    body = json_body()
    updated = records.update(collection, record_id, body, current_principal(), request_info(body))
    return json_response(updated)


@bp.delete("/<collection>/<record_id>")
def delete_record(collection: str, record_id: str) -> Response:
    services().records.delete(collection, record_id, current_principal(), request_info())
    return Response(status=204)
