"""Development entry point: `flask --app app run` (the project from ALYX_PROJECT_DIR or .flaskenv).

It listens where the project says (server.host/server.port in alyx.yaml, ALYX_SERVER_HOST/PORT)
unless `--host`/`--port` (or FLASK_RUN_HOST/FLASK_RUN_PORT) say otherwise.
"""
import os
import sys

from alyx.app import create_app
from alyx.config import load_config
from alyx.devserver import flask_run_address, rerun_flask_with
from alyx.errors import ConfigError

os.environ.setdefault("ALYX_SERVER_ENVIRONMENT", "development")  # a generated signing key is fine here

try:
    config = load_config()
    address = flask_run_address(config)
    if address:
        rerun_flask_with(address)  # `flask run` chose its own default host/port: run again with the project's
    app = create_app(config)
except ConfigError as exc:
    sys.stderr.write(f"Alyx cannot start: {exc}\n")
    raise SystemExit(2) from None
