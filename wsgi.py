"""Production entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (gevent workers).

Patch first, before anything imports socket, ssl or threading (STACK.md).
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from alyx.app import create_app  # noqa: E402
from alyx.errors import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"Alyx cannot start: {exc}\n")
    raise SystemExit(2) from None
