"""The app `alyx dev` serves: the real app, or — while the schema is broken — a page saying why."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, Response

from alyx.app import create_app
from alyx.errors import AlyxError, ConfigError
from alyx.http import json_response


def dev_app(project_dir: Path) -> Flask:
    """Build the app; on a ConfigError serve the message (503) until the reloader sees a fix."""
    try:
        return create_app(project_dir=project_dir)
    except ConfigError as exc:
        message = str(exc)
        print(f"Alyx cannot start: {message}\nWaiting for schema.yaml / alyx.yaml to change...", flush=True)
        broken = Flask("alyx-broken")

        @broken.route("/", defaults={"path": ""})
        @broken.route("/<path:path>")
        def explain(path: str) -> Response:
            error = AlyxError("config_error", message, 503)
            return json_response(error.to_dict(), 503)

        return broken
