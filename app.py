"""Development entry point: `flask --app app run` (the project comes from ALYX_PROJECT_DIR or .flaskenv)."""
import os
import sys

from alyx.app import create_app
from alyx.errors import ConfigError

os.environ.setdefault("ALYX_SERVER_ENVIRONMENT", "development")  # a generated signing key is fine here

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"Alyx cannot start: {exc}\n")
    raise SystemExit(2) from None
