#!/usr/bin/env bash
# One command to run Alyx on its embedded default (SQLite, the quickstart project) on a fresh machine:
#   bash scripts/dev.sh
# Creates .venv, installs requirements.txt, then runs `flask --app app run` on port 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/flask --app app run "$@"
