#!/usr/bin/env bash
# One command to run Alyx on its embedded default (SQLite, the quickstart project) on a fresh machine:
#   bash scripts/dev.sh
# Creates .venv, installs the pinned requirements and Alyx itself into it (`pip install -e .`: the
# `alyx` command), then runs `flask --app app run` (the quickstart's server.port, 8080).
# A script cannot activate a venv for the shell that started it: afterwards, `. .venv/bin/activate`
# (or call .venv/bin/alyx) for the README's next steps.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -e .
echo "Alyx is installed in .venv: run '. .venv/bin/activate' in your shell for the alyx command."
exec .venv/bin/flask --app app run "$@"
