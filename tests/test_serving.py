"""gunicorn with CoalescingResponse (headers and body in one send) still frames every response right."""
from __future__ import annotations

import http.client
import json

from alyx.serving import CoalescingResponse


def test_responses_over_one_keep_alive_connection(live_server) -> None:
    server = live_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps({"title": "hello", "slug": "hello"})
    conn.request("POST", "/api/collections/posts", body, {"Content-Type": "application/json"})
    created = conn.getresponse()
    record = json.loads(created.read())
    assert created.status == 201 and record["title"] == "hello"
    for _ in range(3):
        conn.request("GET", f"/api/collections/posts/{record['id']}")
        resp = conn.getresponse()
        raw = resp.read()
        assert resp.status == 200 and int(resp.getheader("Content-Length")) == len(raw)
        assert json.loads(raw)["id"] == record["id"]
    conn.request("HEAD", "/api/health")
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    conn.request("GET", "/api/collections/posts/zzzzzzzzzzzzzzz")
    missing = conn.getresponse()
    assert missing.status == 404 and json.loads(missing.read())["error"]["code"] == "not_found"
    conn.request("DELETE", f"/api/collections/posts/{record['id']}")
    deleted = conn.getresponse()
    assert deleted.status == 204 and deleted.read() == b""
    conn.request("GET", "/api/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_installed_in_the_workers() -> None:
    import gunicorn.http.wsgi as wsgi

    from alyx.serving import coalesce_response_writes

    original = wsgi.Response
    try:
        coalesce_response_writes()
        assert wsgi.Response is CoalescingResponse
    finally:
        wsgi.Response = original
