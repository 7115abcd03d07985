"""The OpenAPI paths of the fixed endpoints: functions, webhooks, executions, schedules, jobs, events, health."""
from __future__ import annotations

from typing import Any

from apispec import APISpec

from alyx.openapi.components import (
    ANY_OBJECT,
    ANY_VALUE,
    BOOLEAN,
    DATETIME,
    INTEGER,
    NO_TOKEN,
    NUMBER,
    SIGNED_IN,
    STRING,
    errors,
    items_of,
    json_request,
    nullable,
    obj,
    path_param,
    query_param,
    ref,
    response,
)

ADMINS = "Admins only: a Bearer access token of a user with role admin (401 without one, 403 for other users)."
LIMIT = query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "How many, newest first (default 50)")
ERROR_OBJECT = obj({"code": STRING, "message": STRING, "details": ANY_OBJECT}, ["code", "message"])
JOB_STATUSES = ["pending", "running", "done", "dead"]
TRIGGERS = ["http", "database", "webhook", "schedule", "event"]


def system_schemas() -> dict[str, dict[str, Any]]:
    """Response and request bodies of the fixed endpoints (shapes of alyx/executions.py, jobs.py, ...)."""
    return {
        "Health": obj({
            "status": {"type": "string", "enum": ["ok"]}, "version": STRING,
            "database": {"type": "string", "enum": ["sqlite", "postgresql"]},
            "collections": {"type": "array", "items": STRING},
            "functions": obj({"sandbox": {**STRING, "description": "The tier functions run in (or 'unavailable: why')"},
                              "setting": STRING,
                              "problems": {"type": "array", "items": ref("FunctionProblem")},
                              "images": nullable({"type": "array", "items": obj(
                                  {"runtime": STRING, "image": STRING, "present": {"type": "boolean"}},
                                  ["runtime", "image", "present"])})}),
            "realtime": obj({"broker": {"type": "string", "enum": ["none", "redis", "postgres"]},
                             "url": nullable(STRING)}, ["broker"]),
            "workers": obj({"configured": INTEGER, "running": nullable(INTEGER), "pid": INTEGER}, ["configured"]),
            "migrations": obj({"pending": {"type": "array", "items": obj(
                {"collection": STRING, "action": STRING, "detail": STRING, "destructive": {"type": "boolean"}},
                ["collection", "action", "detail", "destructive"])},
                "review": nullable(STRING),
                "command": {**nullable(STRING), "description": "What applies the destructive steps"}},
                ["pending", "command"])},
            ["status", "version"],
            description="status and version for anyone; the rest for admins (in development database, "
                        "collections and functions for anyone too)"),
        "Index": obj({k: STRING for k in ("name", "version", "docs", "openapi", "health")},
                     ["name", "version", "docs", "openapi", "health"]),
        "FunctionProblem": obj({"function": STRING, "message": STRING}, ["function", "message"]),
        "FunctionInfo": obj({"name": STRING, "status": {"type": "string", "enum": ["ok", "unavailable"]},
                             "runtime": {"type": "string", "enum": ["python", "node", "go"]},
                             "version": STRING, "error": {**STRING, "description": "Why it cannot load (file:line)"},
                             "tier": {**STRING, "description": "The sandbox tier it runs in"},
                             "limits": obj({"timeout": NUMBER, "memory": {**INTEGER, "description": "MB"},
                                            "cpu": NUMBER, "max_instances": INTEGER, "concurrency": INTEGER,
                                            "min_warm": INTEGER, "network": BOOLEAN}),
                             "invoke_rule": nullable(STRING),
                             "hooks": obj({
                                 "http": BOOLEAN, "run_as": STRING, "retries": nullable(INTEGER),
                                 "database": {"type": "array", "items": obj(
                                     {"collection": STRING, "actions": {"type": "array", "items": STRING},
                                      "mode": STRING})},
                                 "webhook": nullable(obj({"verification": nullable(STRING), "header": nullable(STRING),
                                                          "required": BOOLEAN, "mode": STRING, "scheme": STRING,
                                                          "tolerance_seconds": NUMBER})),
                                 "events": {"type": "array", "items": obj(
                                     {"type": STRING, "source": STRING, "action": STRING})}}),
                             "schedules": {"type": "array", "items": obj(
                                 {"name": STRING, "type": STRING, "expression": STRING, "timezone": nullable(STRING),
                                  "enabled": BOOLEAN})}},
                            ["name", "status"]),
        "FunctionList": items_of("FunctionInfo"),
        "Execution": obj({
            "id": STRING, "function_id": STRING, "version": STRING, "trigger_type": {"type": "string",
                                                                                      "enum": TRIGGERS},
            "status": {**STRING, "description": "success, error, timeout, denied, ..."},
            "started_at": DATETIME, "duration_ms": {"type": "number"}, "timings": ANY_OBJECT,
            "input": ANY_VALUE, "output": ANY_VALUE, "error": nullable(ERROR_OBJECT),
            "logs": obj({"stdout": STRING, "stderr": STRING}, ["stdout", "stderr"]),
            "tier": STRING, "sandbox": nullable(STRING)},
            ["id", "function_id", "trigger_type", "status", "started_at", "duration_ms", "logs"]),
        "ExecutionList": items_of("Execution", next={**nullable(STRING), "description": "Pass as `before` for the "
                                                     "next (older) page; null on the last page"}),
        "Job": obj({
            "id": INTEGER, "kind": {"type": "string", "enum": ["function", "outgoing"]}, "target": STRING,
            "trigger_type": STRING, "payload": ANY_VALUE, "status": {"type": "string", "enum": JOB_STATUSES},
            "attempts": INTEGER, "max_attempts": INTEGER, "run_at": DATETIME, "locked_by": nullable(STRING),
            "locked_until": nullable(DATETIME), "last_error": ANY_VALUE, "last_execution_id": nullable(STRING),
            "created_at": DATETIME, "updated_at": DATETIME},
            ["id", "kind", "target", "trigger_type", "status", "attempts", "max_attempts"]),
        "JobList": items_of("Job", counts={"type": "object", "additionalProperties": INTEGER,
                                           "description": "Jobs per status"}),
        "Schedule": obj({
            "function": STRING, "name": STRING, "key": STRING,
            "type": {"type": "string", "enum": ["cron", "interval", "one_time"]}, "expression": STRING,
            "timezone": nullable(STRING), "enabled": {"type": "boolean"}, "catch_up": ANY_VALUE, "input": ANY_VALUE,
            "next_run_at": nullable(DATETIME), "last_run_at": nullable(DATETIME),
            "last_job_id": nullable(INTEGER), "last_status": nullable(STRING)},
            ["function", "name", "key", "type", "expression"]),
        "ScheduleList": items_of("Schedule", errors={"type": "array", "items": ref("FunctionProblem")},
                                 leader={**nullable(STRING), "description": "The worker holding the scheduler lease"}),
        "JobQueued": obj({"job_id": INTEGER, "schedule": STRING}, ["job_id"]),
        "WebhookAccepted": obj({"job_id": INTEGER, "verified": {"type": "boolean"},
                                "verification_error": nullable(STRING)}, ["job_id", "verified"]),
        "Event": obj({"type": {"type": "string", "minLength": 1, "maxLength": 200}, "source": nullable(STRING),
                      "action": nullable(STRING), "payload": ANY_VALUE}, ["type"], closed=True),
        "EventAccepted": obj({"delivered_to": {"type": "array", "items": STRING,
                                               "description": "The functions subscribed to it"}},
                             ["delivered_to"]),
    }


def admin_operation(op_id: str, tag: str, summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"tags": [tag], "summary": summary, "operationId": op_id, "security": SIGNED_IN, "description": ADMINS,
            "responses": {**responses, **errors("401", "403")}, **more}


def add_function_paths(api: APISpec) -> None:
    """/api/functions (the catalog) and /api/functions/<name>[/<rest>] with any method (an invocation)."""
    tag = "functions"
    api.path(path="/api/functions", operations={"get": admin_operation(
        "list_functions", tag, "Every function, with its runtime and version or why it cannot load",
        {"200": response("The functions", "FunctionList")})})
    for suffix, extra in (("", []), ("/{rest}", [path_param("rest", description="Passed on as the request path")])):
        operations: dict[str, dict[str, Any]] = {}
        for method in ("get", "post", "put", "patch", "delete"):
            operations[method] = {
                "tags": [tag], "summary": f"Invoke a function ({method.upper()})",
                "operationId": f"invoke_function{'_path' if suffix else ''}_{method}",
                "description": "The request (method, path, query, headers but Authorization and cookies, body) is "
                               "the function's `req`; the caller is `req.auth`, checked by the function's "
                               "`rules.invoke`. The function's response is returned as it is, with "
                               "`X-Alyx-Execution-Id`; a failed run is an error with the execution id in details. "
                               "HEAD and OPTIONS reach the function too.",
                "parameters": [path_param("name", description="The function's name"), *extra],
                "responses": {"default": {"description": "The function's response",
                                          "headers": {"X-Alyx-Execution-Id": {"schema": STRING}},
                                          "content": {"*/*": {"schema": {}}}},
                              **errors("401", "403", "404", "502", "503", "504",
                                       notes={"401": "The function's invoke rule needs a signed-in user",
                                              "403": "The function's invoke rule denied the call",
                                              "404": "No such function"})}}
            if method != "get":
                operations[method]["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
        api.path(path=f"/api/functions/{{name}}{suffix}", operations=operations)


def add_trigger_paths(api: APISpec) -> None:
    """Webhooks in, custom events, the schedules and the job queue."""
    api.path(path="/api/webhooks/{name}", operations={"post": {
        "tags": ["webhooks"], "summary": "Deliver a webhook to a function (verified, then queued)",
        "operationId": "receive_webhook", "security": NO_TOKEN,
        "description": "The signature (the function's `hooks: type: webhook` verification) is checked over the raw "
                       "body; the delivery is queued as a job and runs the function with `req.input = {body, "
                       "headers, verified, verification_error}`.",
        "parameters": [path_param("name", description="The function's name")],
        "requestBody": {"required": False, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"202": response("Queued", "WebhookAccepted"),
                      **errors("401", "404", notes={"401": "The signature check failed",
                                                    "404": "No such function, or it has no webhook hook"})}}})
    api.path(path="/api/events", operations={"post": admin_operation(
        "publish_event", "events", "Publish a custom event to the functions whose hooks subscribe to it",
        {"202": response("Queued for each subscriber", "EventAccepted"), **errors("400", "415")},
        requestBody=json_request("Event"))})
    api.path(path="/api/schedules", operations={"get": admin_operation(
        "list_schedules", "schedules", "Every schedule with its last and next run",
        {"200": response("The schedules", "ScheduleList")})})
    api.path(path="/api/schedules/{function}/{name}/run", operations={"post": admin_operation(
        "run_schedule", "schedules", "Run a schedule now (its next run time stays)",
        {"202": response("Queued", "JobQueued"), **errors("404", notes={"404": "No such schedule"})},
        parameters=[path_param("function"), path_param("name")])})
    job_id = path_param("job_id", INTEGER)
    api.path(path="/api/jobs", operations={"get": admin_operation(
        "list_jobs", "jobs", "The job queue, newest first, with counts per status",
        {"200": response("Jobs", "JobList"), **errors("400")},
        parameters=[query_param("status", {"type": "string", "enum": JOB_STATUSES}),
                    query_param("trigger_type", STRING), query_param("target", STRING), LIMIT])})
    api.path(path="/api/jobs/{job_id}", operations={"get": admin_operation(
        "view_job", "jobs", "One job", {"200": response("The job", "Job"), **errors("404")},
        parameters=[job_id])})
    api.path(path="/api/jobs/{job_id}/retry", operations={"post": admin_operation(
        "retry_job", "jobs", "Retry a dead job (pending again, one more attempt)",
        {"202": response("Pending again", "Job"),
         **errors("404", "409", notes={"404": "No such job", "409": "Only dead jobs can be retried"})},
        parameters=[job_id])})


def add_log_and_health_paths(api: APISpec) -> None:
    """The execution log, health, the index and this document itself."""
    api.path(path="/api/executions", operations={"get": admin_operation(
        "list_executions", "executions", "Function runs, newest first",
        {"200": response("Executions", "ExecutionList"), **errors("400")},
        parameters=[query_param("function_id", STRING), query_param("status", STRING),
                    query_param("trigger_type", {"type": "string", "enum": TRIGGERS}), LIMIT,
                    query_param("before", STRING, "The `next` of the page before: runs older than that one")])})
    api.path(path="/api/executions/{execution_id}", operations={"get": admin_operation(
        "view_execution", "executions", "One function run with its input, output, logs and error",
        {"200": response("The execution", "Execution"), **errors("404")},
        parameters=[path_param("execution_id")])})
    api.path(path="/api/collections", operations={"get": admin_operation(
        "list_collections", "admin", "Collections with fields (type, settings, UI widget), indexes, rules, counts",
        {"200": {"description": "{items: [...]}", "content": {"application/json": {"schema": ANY_OBJECT}}}})})
    api.path(path="/api/settings", operations={"get": admin_operation(
        "list_settings", "admin", "The effective settings, secrets masked",
        {"200": {"description": "{items: [{key, value, default, env}], project_dir}",
                 "content": {"application/json": {"schema": ANY_OBJECT}}}})})
    api.path(path="/api/health", operations={"get": {
        "tags": ["system"], "summary": "Health", "operationId": "health",
        "description": "Anyone: status and version. Admins: database, collections, sandbox tier and runtime "
                       "images, realtime broker, workers and pending migrations with the command to run.",
        "responses": {"200": response("OK: the database answers", "Health"), **errors("401")}}})
    api.path(path="/", operations={"get": {
        "tags": ["system"], "summary": "Where the docs, this document and health are", "operationId": "index",
        "responses": {"200": response("Links", "Index"), **errors("401")}}})
    api.path(path="/api/openapi.json", operations={"get": {
        "tags": ["system"], "summary": "This OpenAPI document", "operationId": "openapi_document",
        "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": ANY_OBJECT}}},
                      **errors("401")}}})
