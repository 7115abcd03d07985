"""HTTP only: each blueprint parses a request, calls one service, and shapes the response.

This package module holds what every blueprint uses; alyx/blueprints/routes.py registers them.
"""
from __future__ import annotations

from flask import current_app, g, request
from werkzeug.datastructures import MultiDict

from alyx.rules import Principal, RequestInfo
from alyx.services import Services


def services() -> Services:
    """The services of the current app."""
    svc: Services = current_app.extensions["alyx"]
    return svc


def current_principal() -> Principal | None:
    """The authenticated caller; None for anonymous requests."""
    principal: Principal | None = g.get("principal")
    return principal


def request_info(body: object = None) -> RequestInfo:
    """What rules see as `request`: method, query and (for writes) the JSON body's top-level keys."""
    return make_request_info(request.method, request.args, body)


def make_request_info(method: str, args: MultiDict[str, str], body: object = None) -> RequestInfo:
    """`request_info` of a method, its parsed query string and body (the fast CRUD dispatch has no Flask request)."""
    return RequestInfo(method=method, query=args.to_dict(), body=body if isinstance(body, dict) else {})
