"""The Flask app factory: config → services → blueprints, nothing at import time but definitions."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, request

from alyx.accesslog import redact_werkzeug_log
from alyx.blueprints.fast_crud import install as install_fast_crud
from alyx.blueprints.routes import register_blueprints
from alyx.config import Config, load_config
from alyx.errors import ConfigError
from alyx.http import install_error_handlers
from alyx.proxies import TrustedProxies, parse_networks
from alyx.resources import resource_dir
from alyx.services import Services, build_services


def create_app(config: Config | None = None, project_dir: str | Path | None = None) -> Flask:
    """Build an app for a project; raises ConfigError (one clear message) on a bad config or schema."""
    config = config or load_config(project_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_werkzeug_log()  # the dev server's request lines carry ?token= (realtime sign-in)
    svc = build_services(config)
    app = Flask("alyx", static_folder=str(resource_dir("static")),
                static_url_path="/_static")
    app.config["MAX_CONTENT_LENGTH"] = config.server_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    app.extensions["alyx"] = svc
    install_error_handlers(app)
    _manage_connections(app, svc)
    register_blueprints(app)
    install_fast_crud(app, svc)  # the record routes before Flask's machinery; inside the proxy fix-up
    _trust_proxies(app, config)
    svc.functions.prewarm()  # warm sandboxes for the runtimes functions/ uses, in the background
    svc.db.start_checkpoints()  # SQLite: WAL checkpoints off the request path (alyx/db_checkpoint.py)
    svc.events.start()  # this worker runs due jobs; one worker (a database lease) runs schedules
    return app


def _trust_proxies(app: Flask, config: Config) -> None:
    """Behind nginx: the client's address and scheme from X-Forwarded-*, only from server.trusted_proxies."""
    if not config.server_trusted_proxies:
        return
    try:
        networks = parse_networks(config.server_trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"server.trusted_proxies: {exc}") from None
    app.wsgi_app = TrustedProxies(app.wsgi_app, networks)  # type: ignore[method-assign]


def _manage_connections(app: Flask, svc: Services) -> None:
    """Each request borrows a pooled connection and gives it back."""
    db = svc.db.peewee

    @app.before_request
    def _connect() -> None:
        if request.endpoint == "realtime.realtime_socket":
            return  # a WebSocket lives for hours: it borrows a connection per operation instead
        db.connect(reuse_if_open=True)

    @app.teardown_request
    def _release(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()
