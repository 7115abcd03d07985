"""/api/functions lists functions (admins); /api/functions/<name> (any method) runs one.

The execution log is blueprints/executions.py."""
from __future__ import annotations

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState

from alyx.blueprints import current_principal, services
from alyx.blueprints.access import admin_required
from alyx.errors import AlyxError
from alyx.functions import SECRET_HEADERS, http_log_input, public_details
from alyx.http import json_response, request_body
from alyx.sandbox import Call, CallResult, request_target

bp = Blueprint("functions", __name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.record_once
def _callback_target(state: BlueprintSetupState) -> None:
    """Functions call back into this same app (through a Unix socket, as their caller)."""
    state.app.extensions["alyx"].functions.callback_app = state.app


@bp.get("/api/functions")
@admin_required("The function list")
def list_functions() -> Response:
    """Every function with its runtime and version, or the file:line problem that keeps it from loading."""
    return json_response({"items": services().functions.catalog()})


@bp.route("/api/functions/<name>", methods=METHODS)
@bp.route("/api/functions/<name>/<path:rest>", methods=METHODS)
def invoke(name: str, rest: str = "") -> Response:
    functions = services().functions
    body = request_body()
    # The caller's credentials stay here: the function gets req.auth, never the token itself.
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS]
    # The path travels percent-encoded once (werkzeug decoded it); the shim decodes it once for req.path.
    call = Call(request.method, request_target(request.path, request.query_string), headers, body, trigger="http")
    rule_request = {"method": request.method, "path": request.path, "query": request.args.to_dict(),
                    "headers": {k.lower(): v for k, v in headers}}
    log_input = http_log_input(request.method, request.path, request.args.to_dict(), dict(headers), body)
    result, execution_id = functions.invoke(name, call, current_principal(), rule_request, log_input)
    return function_response(result, execution_id)


def function_response(result: CallResult, execution_id: str) -> Response:
    """A run's answer as the HTTP response (status, headers, body); a failed run raises its error (502/504/...)."""
    if result.outcome != "success":
        error = result.error or {"code": "function_error", "message": "The function failed."}
        raise AlyxError(error.get("code") or "function_error", error.get("message") or "The function failed.",
                        result.status, public_details(error, execution_id), {"X-Alyx-Execution-Id": execution_id})
    response = Response(result.body, status=result.status)
    for key, value in result.headers:
        if key.lower() == "content-type":
            response.headers["Content-Type"] = value
        else:
            response.headers.add(key, value)
    response.headers["X-Alyx-Execution-Id"] = execution_id
    return response
