"""HTTP only: each blueprint parses a request, calls one service, and shapes the response."""
from __future__ import annotations

from flask import Flask, current_app

from alyx.rules import Principal, RequestInfo
from alyx.services import Services


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions["alyx"]


def current_principal() -> Principal | None:
    """The authenticated caller; None for anonymous requests."""
    from flask import g

    return g.get("principal")


def request_info(body: object = None) -> RequestInfo:
    """What rules see as `request`: method, query and (for writes) the JSON body's top-level keys."""
    from flask import request

    return RequestInfo(method=request.method, query=request.args.to_dict(),
                       body=body if isinstance(body, dict) else {})


def register_blueprints(app: Flask) -> None:
    """The one place blueprints are registered."""
    from alyx.blueprints.auth import install_auth
    from alyx.blueprints.collections import bp as collections_bp
    from alyx.blueprints.docs import register_docs
    from alyx.blueprints.functions import bp as functions_bp
    from alyx.blueprints.health import bp as health_bp

    install_auth(app)  # first: its before_request sets g.principal for every other blueprint
    app.register_blueprint(health_bp)
    app.register_blueprint(collections_bp)
    app.register_blueprint(functions_bp)
    from alyx.blueprints.realtime import register_realtime

    register_realtime(app)
    from alyx.blueprints.schedules import bp as schedules_bp
    from alyx.blueprints.webhooks import bp as webhooks_bp

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(schedules_bp)
    register_docs(app)
