"""The five record routes answered in front of Flask: a WSGI layer that wraps the app's ``wsgi_app``.

``GET``/``POST /api/collections/<c>`` and ``GET``/``PATCH``/``DELETE /api/collections/<c>/<id>``
(JSON bodies) are the hot paths, and Flask's per-request machinery (contexts, routing, hook
dispatch, Response objects) was about two thirds of a GET's CPU (docs/benchmarks.md). This layer
answers them without it, doing exactly what those routes do through Flask, with the same code:
the request hooks (``admit``: rate limit, bearer token and session checks, the functions' callback
caller; the pooled connection borrowed and given back), the body limits and JSON parsing
(``read_body``, ``parse_json``), the same ``Records`` calls (validation, rules, sync hooks, change
feed, ``fields``/``expand``), the same error shaping (``error_reply``) and response headers.

Everything else goes to Flask unchanged: other paths and methods (HEAD, OPTIONS), multipart or
non-JSON bodies, ``bulk``, paths with empty segments or non-ASCII characters. And if the app has
any request hook, error handler or view this layer does not know (someone added an
``after_request``, say), every request goes to Flask, so nothing is ever skipped silently.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wrappers import Request

from alyx.blueprints import make_request_info
from alyx.blueprints.auth import admit
from alyx.http import error_reply, parse_json, read_body
from alyx.services import Services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("alyx.fast_crud")

PREFIX = "/api/collections/"
# What Flask would run around these routes; each is done here by the same function (see the docstring).
KNOWN_HOOKS = {
    "before_request_funcs": {"alyx.app._manage_connections.<locals>._connect",
                             "alyx.blueprints.auth.install_auth.<locals>._authenticate"},
    "teardown_request_funcs": {"alyx.app._manage_connections.<locals>._release"},
    "after_request_funcs": set(),
    "url_value_preprocessors": set(),
}
ENDPOINTS = ("list_records", "create_record", "view_record", "update_record", "delete_record")
KNOWN_ERROR_HANDLERS = {"alyx.http.install_error_handlers.<locals>.handle_any"}
JSON_TYPE = ("Content-Type", "application/json")
STATUS_LINES = {code: f"{code} {text.upper()}" for code, text in HTTP_STATUS_CODES.items()}
NO_ARGS: ImmutableMultiDict[str, str] = ImmutableMultiDict()


def _name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def unknown_machinery(app: Flask) -> list[str]:
    """What Flask would do around the record routes that this layer does not (empty: it may answer them)."""
    unknown = []
    for attribute, known in KNOWN_HOOKS.items():
        registry: dict[str | None, list[Callable[..., Any]]] = getattr(app, attribute)
        for scope in (None, "collections"):
            unknown += [f"{attribute}[{scope}]: {_name(f)}" for f in registry.get(scope, []) if _name(f) not in known]
    if app.url_default_functions.get(None) or app.url_default_functions.get("collections"):
        unknown.append("url_default_functions")
    for scope, by_code in app.error_handler_spec.items():
        for handlers in by_code.values():
            unknown += [f"error handler {_name(h)}" for h in handlers.values()
                        if scope not in (None, "collections") or _name(h) not in KNOWN_ERROR_HANDLERS]
    unknown += [f"view {endpoint}" for endpoint in ENDPOINTS
                if _name(app.view_functions.get(f"collections.{endpoint}", _name))
                != f"alyx.blueprints.collections.{endpoint}"]
    return unknown


class FastCrud:
    """The WSGI callable in front of Flask's ``wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, svc: Services, flask_wsgi: WSGIApplication) -> None:
        self.app = app
        self.svc = svc
        self.flask_wsgi = flask_wsgi
        self.enabled: bool | None = None  # decided at the first request, once the app is complete
        self.served = 0  # requests answered here (tests check that they really come this way)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self.route(environ)
        if route is None:
            return self.flask_wsgi(environ, start_response)
        if self.enabled is None:
            unknown = unknown_machinery(self.app)
            if unknown:
                log.warning("fast CRUD dispatch is off; Flask answers every request (unknown: %s)", "; ".join(unknown))
            self.enabled = not unknown
            # As after Flask's own first request: a hook added from now on is refused, never skipped.
            self.app._got_first_request = True
        if not self.enabled:
            return self.flask_wsgi(environ, start_response)
        return self.serve(environ, start_response, *route)

    @staticmethod
    def route(environ: WSGIEnvironment) -> tuple[str, str, str | None] | None:
        """(method, collection, record id) of a request this layer answers, else None."""
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX) or not path.isascii():
            return None
        method: str = environ.get("REQUEST_METHOD", "")
        collection, _, record_id = path[len(PREFIX):].partition("/")
        if not collection:
            return None
        if not record_id:
            if path.endswith("/") or method not in ("GET", "POST"):
                return None
            found: tuple[str, str, str | None] = (method, collection, None)
        elif "/" in record_id or record_id == "bulk" or method not in ("GET", "PATCH", "DELETE"):
            return None
        else:
            found = (method, collection, record_id)
        if method in ("POST", "PATCH") and \
                parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower() != "application/json":
            return None  # multipart (files) and the 415 of other types: Flask's route
        return found

    def serve(self, environ: WSGIEnvironment, start_response: StartResponse, method: str, collection: str,
              record_id: str | None) -> Iterable[bytes]:
        self.served += 1
        db = self.svc.db.peewee
        headers: dict[str, str] | None = None
        try:
            db.connect(reuse_if_open=True)
            status, payload = self.answer(environ, method, collection, record_id)
        except Exception as exc:  # noqa: BLE001 - shaped as Flask's handler shapes it (error_reply)
            payload, status, headers = error_reply(exc, method, environ.get("PATH_INFO", ""),
                                                   self.app.config.get("MAX_CONTENT_LENGTH"))
        finally:
            if not db.is_closed():
                db.close()
        if status == 204:
            start_response(STATUS_LINES[204], [("Content-Type", "text/html; charset=utf-8")])
            return [b""]
        data = orjson.dumps(payload)
        start_response(STATUS_LINES[status], [*(headers or {}).items(), JSON_TYPE, ("Content-Length", str(len(data)))])
        return [data]

    def answer(self, environ: WSGIEnvironment, method: str, collection: str, record_id: str | None
               ) -> tuple[int, Any]:
        """What the collections blueprint's view answers: (status, JSON payload)."""
        principal, _ = admit(self.svc, environ, environ["PATH_INFO"])
        args = Request(environ, shallow=True).args if environ.get("QUERY_STRING") else NO_ARGS
        records = self.svc.records
        reads_request = self.svc.access.read_request  # else no rule looks at the RequestInfo: not built
        if method == "GET":
            info = make_request_info(method, args) if reads_request else None
            if record_id is None:
                return 200, records.list(collection, args, principal, info)
            return 200, records.view(collection, record_id, args, principal, info)
        if method == "DELETE":
            records.delete(collection, record_id or "", principal,
                           make_request_info(method, args) if reads_request else None)
            return 204, None
        records.collection(collection)  # 404 for an unknown collection before looking at the body
        body = parse_json(read_body(environ, self.app.config.get("MAX_CONTENT_LENGTH")))
        info = make_request_info(method, args, body) if reads_request else None
        if record_id is None:
            return 201, records.create(collection, body, principal, info, files=None)
        return 200, records.update(collection, record_id, body, principal, info, files=None)


def install(app: Flask, svc: Services) -> FastCrud:
    """Put the fast dispatch in front of ``app.wsgi_app`` (before any middleware that must see every request)."""
    fast = FastCrud(app, svc, app.wsgi_app)
    app.wsgi_app = fast  # type: ignore[method-assign]
    app.extensions["alyx.fast_crud"] = fast
    return fast
