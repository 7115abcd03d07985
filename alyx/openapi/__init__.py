"""The OpenAPI 3 document of an app: the collections of schema.yaml and every fixed endpoint.

`collections` has the per-collection paths, `auth`, `system` and `realtime` the fixed ones,
`components` the error shape and helpers they share.
"""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx import __version__
from alyx.config import Config
from alyx.openapi.admin import add_admin_paths, admin_schemas
from alyx.openapi.auth import NEW_PASSWORD, add_auth_paths, auth_schemas
from alyx.openapi.batch import add_batch_path, batch_schemas
from alyx.openapi.collections import COUNT_SCHEMA, add_collection, field_schema, record_schemas, title
from alyx.openapi.components import BEARER, BEARER_SCHEME, ERROR_SCHEMA, OPTIONAL_TOKEN
from alyx.openapi.files import add_file_paths
from alyx.openapi.realtime import add_realtime_path, realtime_schemas
from alyx.openapi.system import add_function_paths, add_log_and_health_paths, add_trigger_paths, system_schemas
from alyx.schema import Schema

USERS = "users"

__all__ = ["build_openapi", "field_schema"]


def build_openapi(schema: Schema, config: Config) -> dict[str, Any]:
    """The whole OpenAPI document as a dict."""
    api = APISpec(title="Alyx API", version=__version__, openapi_version="3.0.3",
                  info={"description": f"REST API of the collections in {config.schema_path.name}, "
                                       "authentication, functions and their triggers, and realtime."},
                  security=OPTIONAL_TOKEN)
    api.components.schema("Error", ERROR_SCHEMA)
    api.components.schema("Count", COUNT_SCHEMA)
    api.components.security_scheme(BEARER, BEARER_SCHEME)
    for spec in schema.collections.values():
        add_collection(api, spec)
    users_record = f"{title(USERS)}Record"
    users_create = record_schemas(schema.collections[USERS])[f"{title(USERS)}Create"]
    new_password = {**NEW_PASSWORD, "minLength": config.auth_password_min_length}
    fixed = {**auth_schemas(users_create, users_record, config.auth_password_min_length), **system_schemas(),
             **realtime_schemas(), **admin_schemas(users_create, new_password),
             **batch_schemas(config.api_max_batch)}
    for name, component in fixed.items():
        api.components.schema(name, component)
    add_auth_paths(api, users_record)
    add_admin_paths(api, users_record)
    add_function_paths(api)
    add_trigger_paths(api)
    add_log_and_health_paths(api)
    add_realtime_path(api)
    add_batch_path(api)
    return add_file_paths(api.to_dict(), schema)  # multipart bodies of file fields, /api/files/*
