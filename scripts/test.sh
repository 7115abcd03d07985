#!/usr/bin/env bash
# One command to run the whole test suite on a fresh machine:
#   bash scripts/test.sh [pytest args]
# Provisions what the tests need (a venv with requirements-dev.txt, PostgreSQL and Redis running
# on 127.0.0.1, Debian's chromium for the browser test), lints and type-checks, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt

bash scripts/provision.sh

.venv/bin/ruff check .
.venv/bin/mypy  # strict on alyx/ (setup.cfg [mypy])
set +e
# Two workers (this machine's cores), each taking whole test files so module-scoped servers and
# shared apps are built once; pass -n 0 to run serially.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$status"
