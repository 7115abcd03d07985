"""/api/collections/<c>[/<id>]: CRUD over the records service."""
from __future__ import annotations

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, request_info, services
from alyx.http import json_response
from alyx.multipart import record_input

bp = Blueprint("collections", __name__, url_prefix="/api/collections")


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
