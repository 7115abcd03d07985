"""Schemathesis against all of /api/openapi.json of a real gunicorn server, anonymous, as a user and as an
admin: no input may produce a 5xx."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from alyx.config import load_config
from alyx.services import build_services
from tests.conftest import TEST_ENV, TEST_SECRET, LiveServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "fuzzing-password-1"

# Left out of every pass, because they cannot be fuzzed meaningfully over plain HTTP:
# - GET /api/realtime is a WebSocket upgrade; schemathesis sends ordinary requests (the socket's frames
#   are covered by tests/test_realtime*.py).
# OAuth start/callback stay in: the fuzzed project configures no provider, so they never redirect out.
# Function invocations, webhooks and schedule runs stay in: the project has no functions (404s), which
# still runs the routing, auth and rule code in front of them.
EVERYWHERE = ["--exclude-path", "/api/realtime"]
# Left out of the signed-in passes only: logout without a body ends the session of the Bearer token the
# pass runs with, and every later request of that pass would be a 401 (logout is fuzzed anonymously).
SIGNED_IN = ["--exclude-operation-id", "auth_logout"]
# Left out of the admin pass only: the admin finds its own id (GET /api/auth/me, the users list) and would
# demote or delete itself, or end its own (and the user pass's) sessions, leaving the rest of the pass
# without an admin (the user pass fuzzes them; tests/test_users_api.py covers the admin's side).
AS_ADMIN = [*SIGNED_IN, "--exclude-operation-id", "update_users", "--exclude-operation-id", "delete_users",
            "--exclude-operation-id", "admin_revoke_sessions"]
# Without it schemathesis signs up through /api/auth/register by itself, and no pass would be anonymous.
CONFIG = "[auth]\nauto-signup = false\n"


def access_token(server: LiveServer, email: str, admin: bool = False) -> str:
    """Register (or, for an admin, create one as `alyx admin create` does) and log in over HTTP."""
    if admin:
        svc = build_services(load_config(server.log.parent, env={**TEST_ENV, "ALYX_AUTH_SECRET": TEST_SECRET}),
                             migrate=False)
        try:
            svc.auth.create_admin(email, PASSWORD)
        finally:
            svc.close()
    else:
        r = requests.post(f"{server.url}/api/auth/register", json={"email": email, "password": PASSWORD},
                          timeout=10)
        assert r.status_code == 201, r.text
    r = requests.post(f"{server.url}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def fuzz(server: LiveServer, report: Path, *options: str, max_examples: int = 10) -> str:
    """One schemathesis pass over the whole document: no 5xx, and bodies as documented."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    config = report.parent / "schemathesis.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [cli, "--config-file", str(config), "run", f"{server.url}/api/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", str(max_examples), "--seed", "20261129", "--request-timeout", "10",
         "--report-dir", str(report), *EVERYWHERE, *options],
        capture_output=True, text=True, timeout=600, cwd=report.parent,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output and "generated" in output
    return output


@pytest.mark.timeout(300)  # three schemathesis passes over ~90 operations: ~80 s quiet, 135 s at load 8 here
def test_openapi_fuzz_finds_no_server_errors(live_server, tmp_path: Path) -> None:
    schema = (ROOT / "examples" / "quickstart" / "schema.yaml").read_text()
    server = live_server(schema=schema, env=TEST_ENV)
    user = access_token(server, "fuzz-user@example.com")
    admin = access_token(server, "fuzz-admin@example.com", admin=True)
    fuzz(server, tmp_path / "anonymous", max_examples=20)
    fuzz(server, tmp_path / "user", "--header", f"Authorization: Bearer {user}", *SIGNED_IN)
    fuzz(server, tmp_path / "admin", "--header", f"Authorization: Bearer {admin}", *AS_ADMIN)
    # Each signed-in pass ran signed in to the end: its token still works, and the admin is still one.
    assert requests.get(f"{server.url}/api/auth/me", headers={"Authorization": f"Bearer {user}"},
                        timeout=10).status_code == 200
    assert requests.get(f"{server.url}/api/functions", headers={"Authorization": f"Bearer {admin}"},
                        timeout=10).status_code == 200
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-4000:]
