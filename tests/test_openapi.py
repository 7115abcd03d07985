"""/api/openapi.json: a valid OpenAPI 3 document that covers every route of the app, with the error shape."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from alyx.app import create_app
from alyx.config import load_config
from alyx.openapi import build_openapi
from alyx.schema import parse_schema
from tests.conftest import BLOG_SCHEMA, TEST_ENV, write_project
from tests.test_schema import EVERYTHING

# Routes that are not API operations: static files, the Swagger UI's pages and assets, the admin UI's files.
NOT_IN_THE_DOCUMENT = ("static", "swagger_ui.", "admin_ui.")
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(load_config(write_project(tmp_path / "project", BLOG_SCHEMA), env=TEST_ENV))
    yield app
    app.extensions["alyx"].close()


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.get_json()
    return doc


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


@pytest.mark.parametrize("schema", [BLOG_SCHEMA, EVERYTHING], ids=["blog", "every-type"])
def test_document_is_valid_openapi(schema: str, tmp_path: Path) -> None:
    doc = build_openapi(parse_schema(schema), load_config(write_project(tmp_path, schema), env=TEST_ENV))
    validate(doc)  # openapi-spec-validator: raises on any violation of OpenAPI 3.0
    assert doc["openapi"] == "3.0.3"
    collections = {name for name in parse_schema(schema).collections}
    assert {f"/api/collections/{c}" for c in collections} <= set(doc["paths"])


def test_every_route_of_the_app_is_in_the_document(app: Flask, document: dict[str, Any]) -> None:
    """A new endpoint cannot be forgotten: every Flask rule matches a documented path for each method."""
    documented = [(path, method) for path, method, _ in operations(document)]
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(NOT_IN_THE_DOCUMENT):
            continue
        # A Flask rule as a pattern over documented paths: each <converter:var> is one `{name}` or a
        # literal segment (collections are documented one path per collection).
        pattern = re.compile("^" + re.sub(r"<[^>]+>", r"[^/]+", re.escape(rule.rule)) + "$")
        for method in sorted({m.lower() for m in rule.methods or ()} & METHODS):
            if not any(pattern.match(path) and m == method for path, m in documented):
                missing.append(f"{method.upper()} {rule.rule} ({rule.endpoint})")
    assert not missing, "routes missing from the OpenAPI document: " + ", ".join(missing)


def test_every_documented_operation_is_a_route(app: Flask, document: dict[str, Any]) -> None:
    adapter = app.url_map.bind("localhost")
    for path, method, _ in operations(document):
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        adapter.match(concrete, method=method.upper(), websocket=path == "/api/realtime")


def test_operations_have_ids_responses_and_the_error_shape(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, op in operations(document):
        assert op.get("summary"), (path, method)
        assert op["responses"], (path, method)
        for status, answer in op["responses"].items():
            if status[0] in "45":
                assert answer["content"]["application/json"]["schema"] == error, (path, method, status)
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]


def test_security_says_who_may_call(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert document["security"] == [{}, {"bearer": []}]  # default: a token is optional, rules decide
    paths = document["paths"]
    signed_in = [{"bearer": []}]
    for path, method in [("/api/auth/me", "get"), ("/api/auth/password", "post"), ("/api/functions", "get"),
                         ("/api/executions", "get"), ("/api/executions/{execution_id}", "get"),
                         ("/api/jobs", "get"), ("/api/jobs/{job_id}/retry", "post"), ("/api/schedules", "get"),
                         ("/api/schedules/{function}/{name}/run", "post"), ("/api/events", "post")]:
        assert paths[path][method]["security"] == signed_in, path
    for path in ("/api/auth/login", "/api/auth/register", "/api/auth/refresh", "/api/auth/oauth/{provider}",
                 "/api/webhooks/{name}"):
        assert paths[path]["post" if "oauth" not in path else "get"]["security"] == [], path
    assert "security" not in paths["/api/collections/posts"]["get"]  # the default: rules decide


def test_auth_bodies_follow_the_users_collection(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    register = schemas["Register"]
    assert {"email", "password", "passwordConfirm", "name"} <= set(register["properties"])
    assert not {"role", "verified", "id"} & set(register["properties"])
    assert {"email", "password"} <= set(register["required"])
    tokens = schemas["Tokens"]
    assert tokens["properties"]["user"] == {"$ref": "#/components/schemas/UsersRecord"}
    assert set(tokens["required"]) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    paths = document["paths"]
    assert paths["/api/auth/register"]["post"]["responses"]["201"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/Tokens"}
    assert "302" in paths["/api/auth/oauth/{provider}"]["get"]["responses"]


def test_functions_take_any_method_and_realtime_is_a_websocket(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert METHODS <= set(paths["/api/functions/{name}"]) and METHODS <= set(paths["/api/functions/{name}/{rest}"])
    realtime = paths["/api/realtime"]["get"]
    assert "101" in realtime["responses"]
    for frame in ("connected", "subscribe", "snapshot", "delta", "unsubscribe", "ping", "pong", "error", "since"):
        assert frame in realtime["description"], frame
    assert {"Upgrade", "Sec-WebSocket-Key"} <= {p["name"] for p in realtime["parameters"]}


def test_collection_paths_keep_their_links(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/collections/posts"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == {"view_posts", "update_posts", "delete_posts"}
