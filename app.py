"""Development entry point: `flask --app app run` (the project comes from ALYX_PROJECT_DIR or .flaskenv)."""
import sys

from alyx.app import create_app
from alyx.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"Alyx cannot start: {exc}\n")
    raise SystemExit(2) from None
