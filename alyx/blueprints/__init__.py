"""HTTP only: each blueprint parses a request, calls one service, and shapes the response.

This package module holds what every blueprint uses; alyx/blueprints/routes.py registers them.
"""
from __future__ import annotations

from flask import current_app, g, request

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
    return RequestInfo(method=request.method, query=request.args.to_dict(),
                       body=body if isinstance(body, dict) else {})
