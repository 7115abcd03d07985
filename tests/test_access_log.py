"""Access logs never hold a token (issue 15 item 16): `?token=` (the realtime sign-in) and any
`*token` query parameter are redacted in gunicorn's access log and in werkzeug's dev-server log."""
from __future__ import annotations

import logging
import threading

import pytest
import requests
from werkzeug.serving import make_server

from alyx.accesslog import redact_query
from tests.conftest import TEST_ENV, AppMaker, LiveServer, write_project

SECRET = "eyJhbGciOi.secret-token-value.sig"


@pytest.mark.parametrize("text,expected", [
    (f"GET /api/realtime?token={SECRET} HTTP/1.1", "GET /api/realtime?token=[redacted] HTTP/1.1"),
    (f"/x?a=1&token={SECRET}&b=2", "/x?a=1&token=[redacted]&b=2"),
    (f"/x?access_token={SECRET}&Refresh_Token={SECRET}", "/x?access_token=[redacted]&Refresh_Token=[redacted]"),
    (f"/x?TOKEN={SECRET}#frag", "/x?TOKEN=[redacted]#frag"),
    ("/x?tokens=1&notatoken=2&q=token=3", "/x?tokens=1&notatoken=[redacted]&q=token=3"),
    (f"token={SECRET}", "token=[redacted]"),  # a bare query string (gunicorn's %(q)s)
    ("/api/collections/posts?filter=a", "/api/collections/posts?filter=a"),
])
def test_redact_query(text, expected):
    assert redact_query(text) == expected


def test_werkzeug_dev_server_log_has_no_token(tmp_path, caplog):
    maker = AppMaker(tmp_path, dict(TEST_ENV))
    app = maker()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            requests.get(f"http://127.0.0.1:{server.port}/api/health", params={"token": SECRET}, timeout=10)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        maker.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("token=[redacted]" in line for line in lines), lines
    assert not any(SECRET in line for line in lines), lines


def test_gunicorn_access_log_has_no_token(tmp_path):
    project = write_project(tmp_path / "p", "collections: []\n")
    live = LiveServer(project, workers=1, env={"GUNICORN_ACCESSLOG": "-"})
    try:
        requests.get(f"{live.url}/api/health", params={"token": SECRET}, timeout=10)
        requests.get(f"{live.url}/api/realtime", params={"token": SECRET}, timeout=10)
    finally:
        live.stop()
    log = live.log.read_text()
    assert "token=[redacted]" in log, log[-2000:]
    assert SECRET not in log, log[-2000:]


@pytest.mark.parametrize("trusted,logged", [("127.0.0.1", "203.0.113.9"), ("10.9.9.9", "127.0.0.1")])
def test_gunicorn_access_log_names_the_client_behind_a_trusted_proxy_only(tmp_path, trusted, logged):
    """Behind nginx the access log shows the forwarded client; from an untrusted peer the header is ignored."""
    project = write_project(tmp_path / "p", "collections: []\n")
    live = LiveServer(project, workers=1, env={"GUNICORN_ACCESSLOG": "-", "ALYX_SERVER_TRUSTED_PROXIES": trusted})
    try:
        requests.get(f"{live.url}/api/health", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    finally:
        live.stop()
    lines = [line for line in live.log.read_text().splitlines() if '"GET /api/health' in line]
    assert lines and lines[-1].startswith(logged + " "), lines
