"""The fast CRUD dispatch (alyx/blueprints/fast_crud.py) answers the record routes exactly as the Flask
routes do (status, error shape, headers, body), hands every other request to Flask, and turns itself
off when the app has request machinery it does not know."""
from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from flask import Flask

from alyx.blueprints.fast_crud import FastCrud, unknown_machinery
from tests.conftest import BLOG_SCHEMA
from tests.helpers import assert_error

PASSWORD = "correct horse battery"
VOLATILE = ("id", "created_at", "updated_at")
HEADERS = ("Content-Type", "Content-Length", "Retry-After", "WWW-Authenticate", "Allow")


def fast(app: Flask) -> FastCrud:
    dispatch: FastCrud = app.extensions["alyx.fast_crud"]
    return dispatch


def answer(app: Flask, method: str, url: str, *, flask: bool, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    """One request through the fast dispatch, or (``flask``) through Flask's route: status, headers, body."""
    dispatch = fast(app)
    dispatch.enabled = not flask
    served = dispatch.served
    try:
        resp = app.test_client().open(url, method=method, **kwargs)
    finally:
        dispatch.enabled = None
    assert dispatch.served == served + (0 if flask else 1), f"{method} {url} did not take the expected path"
    headers = {k: resp.headers[k] for k in HEADERS if k in resp.headers}
    body = resp.get_json(silent=True) if resp.data else None
    return resp.status_code, headers, body if body is not None else resp.data


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def same_on_both_paths(app: Flask, method: str, url: str, writes: bool = False, **kwargs: Any) -> tuple[int, Any]:
    ours = answer(app, method, url, flask=False, **kwargs)
    flasks = answer(app, method, url, flask=True, **kwargs)
    if writes:  # two writes make two records: compare all but their ids and times
        ours = (ours[0], {k: v for k, v in ours[1].items() if k != "Content-Length"}, without_volatile(ours[2]))
        flasks = (flasks[0], {k: v for k, v in flasks[1].items() if k != "Content-Length"}, without_volatile(flasks[2]))
    assert ours == flasks, (method, url)
    return ours[0], ours[2]


def test_reads_match_the_flask_routes(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    c = app.test_client()
    author = c.post("/api/auth/register", json={"email": "ann@example.com", "password": PASSWORD}).get_json()["user"]
    post = c.post("/api/collections/posts", json={"title": "Hello", "slug": "hello", "author": author["id"],
                                                  "tags": ["a", {"b": 1}], "published_at": "2026-01-02T03:04:05Z"})
    assert post.status_code == 201
    post_id = post.get_json()["id"]
    for url in [f"/api/collections/posts/{post_id}", f"/api/collections/posts/{post_id}?fields=id,title",
                f"/api/collections/posts/{post_id}?expand=author", f"/api/collections/posts/{post_id}?fields=nope",
                "/api/collections/posts/unknown00000001", "/api/collections/posts/%00%01", "/api/collections/nope/x",
                "/api/collections/posts", '/api/collections/posts?filter=title == "Hello"&perPage=5&expand=author',
                "/api/collections/posts?filter=title ==", "/api/collections/posts?filter=nope == 1",
                "/api/collections/posts?perPage=0", "/api/collections/posts?sort=-views,title&skipTotal=1",
                "/api/collections/posts?status=published", "/api/collections/posts?what=1", "/api/collections/nope",
                '/api/collections/posts?filter={"views": {"$gt": 1}}', "/api/collections/posts?page=x"]:
        same_on_both_paths(app, "GET", url)
    status, _ = same_on_both_paths(app, "GET", f"/api/collections/posts/{post_id}",
                                   headers={"Authorization": "Bearer not-a-token"})
    assert status == 401


def test_writes_match_the_flask_routes(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    ok = {"title": "t", "views": 3, "tags": {"k": [1]}}
    for body in [ok, {"title": ""}, {"views": -1}, {"title": "x", "nope": 1}, {"title": "x", "slug": "Bad Slug"},
                 ["not", "an", "object"], {"title": "x", "author": "missing00000001"}]:
        same_on_both_paths(app, "POST", "/api/collections/posts", writes=True, json=body)
    for raw in [b"", b"   ", b"{", b"nul", b'{"title": "\xff"}']:
        same_on_both_paths(app, "POST", "/api/collections/posts", data=raw, content_type="application/json")
    same_on_both_paths(app, "POST", "/api/collections/nope", writes=True, json=ok)
    big = {"title": "x", "body": "y" * (app.config["MAX_CONTENT_LENGTH"] + 10)}
    status, body = same_on_both_paths(app, "POST", "/api/collections/posts", json=big)
    assert status == 413 and "limit" in body["error"]["message"]
    c = app.test_client()
    ids = [c.post("/api/collections/posts", json={"title": f"p{i}", "slug": f"p{i}"}).get_json()["id"]
           for i in range(4)]
    same_on_both_paths(app, "PATCH", f"/api/collections/posts/{ids[0]}", writes=True, json={"views": 7})
    same_on_both_paths(app, "PATCH", f"/api/collections/posts/{ids[0]}", writes=True, json={"views": "many"})
    same_on_both_paths(app, "PATCH", f"/api/collections/posts/{ids[1]}", writes=True, json={"slug": "p0"})  # 409
    same_on_both_paths(app, "PATCH", "/api/collections/posts/unknown00000001", writes=True, json={"views": 1})
    assert answer(app, "DELETE", f"/api/collections/posts/{ids[2]}", flask=False) == \
        answer(app, "DELETE", f"/api/collections/posts/{ids[3]}", flask=True)
    same_on_both_paths(app, "DELETE", f"/api/collections/posts/{ids[2]}")  # gone: 404 on both


def test_rate_limit_and_token_checks_run_on_the_fast_path(make_app) -> None:
    app = make_app(BLOG_SCHEMA, env={"ALYX_API_RATE_LIMIT": "3", "ALYX_API_RATE_LIMIT_WINDOW": "3600"})
    before = fast(app).served
    c = app.test_client()
    for _ in range(3):
        assert c.get("/api/collections/posts").status_code == 200
    error = assert_error(c.get("/api/collections/posts"), 429, "rate_limited")
    assert error["details"]["retry_after"] > 0
    assert fast(app).served == before + 4
    resp = c.get("/api/collections/posts", headers={"Authorization": "Bearer x.y.z"},
                 environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert_error(resp, 401, "invalid_token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_requests_go_to_flask(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    c = app.test_client()
    post_id = c.post("/api/collections/posts", json={"title": "a"}).get_json()["id"]
    before = fast(app).served
    assert c.get("/api/health").status_code == 200
    assert c.head(f"/api/collections/posts/{post_id}").status_code == 200
    assert c.options("/api/collections/posts").status_code == 200
    assert_error(c.put(f"/api/collections/posts/{post_id}", json={}), 405)
    assert_error(c.post("/api/collections/posts", data="title=x", content_type="text/plain"), 415)
    form = c.post("/api/collections/posts", data={"title": "from a form"}, content_type="multipart/form-data")
    assert form.status_code == 201 and form.get_json()["title"] == "from a form"
    assert c.delete("/api/collections/posts/bulk", json={"filter": 'title == "nothing"'}).get_json() == {"count": 0}
    assert c.get("/api/collections/posts/").status_code in (308, 404)
    assert fast(app).served == before


def test_an_unknown_request_hook_turns_the_fast_path_off(make_app, caplog) -> None:
    app = make_app(BLOG_SCHEMA)

    @app.after_request
    def stamp(response: Any) -> Any:
        response.headers["X-Stamp"] = "yes"
        return response

    assert unknown_machinery(app) == [f"after_request_funcs[None]: {__name__}.{stamp.__qualname__}"]
    with caplog.at_level(logging.WARNING, "alyx.fast_crud"):
        resp = app.test_client().get("/api/collections/posts")
    assert resp.headers["X-Stamp"] == "yes"  # Flask answered, hook and all
    assert fast(app).served == 0 and fast(app).enabled is False
    assert "fast CRUD dispatch is off" in caplog.text


def test_unknown_machinery_is_empty_for_the_app_as_built(make_app) -> None:
    assert unknown_machinery(make_app(BLOG_SCHEMA)) == []


def test_a_hook_added_after_the_first_request_is_refused_as_flask_refuses_it(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    assert app.test_client().get("/api/collections/posts").status_code == 200
    assert fast(app).served == 1
    with pytest.raises(AssertionError, match="first request"):
        app.after_request(lambda response: response)


def test_a_bug_is_a_logged_500_and_a_database_fault_a_503(make_app, caplog, monkeypatch) -> None:
    import sqlite3

    app = make_app(BLOG_SCHEMA)
    records = app.extensions["alyx"].records
    monkeypatch.setattr(records, "view", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.ERROR, "alyx.http"):
        resp = app.test_client().get("/api/collections/posts/abc")
    assert_error(resp, 500, "internal_error")
    assert "ZeroDivisionError" in caplog.text and "unhandled error on GET /api/collections/posts/abc" in caplog.text

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(records, "list", locked)
    resp = app.test_client().get("/api/collections/posts")
    assert_error(resp, 503, "unavailable")
    assert resp.headers["Retry-After"] == "1"
    assert fast(app).served == 2


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_chunked_body_is_bounded_like_the_flask_route(make_app) -> None:
    app = make_app(BLOG_SCHEMA)
    limit = app.config["MAX_CONTENT_LENGTH"]
    for size, status in ((10, 201), (limit + 1, 413)):
        raw = json.dumps({"title": "t", "body": "b" * size}).encode()
        results = []
        for flask in (False, True):
            environ = {"wsgi.input": io.BytesIO(raw), "wsgi.input_terminated": True, "CONTENT_TYPE": "application/json",
                       "HTTP_TRANSFER_ENCODING": "chunked"}
            results.append(answer(app, "POST", "/api/collections/posts", flask=flask, environ_overrides=environ))
        assert results[0][0] == status, results[0][2]
        assert without_volatile(results[0][2]) == without_volatile(results[1][2])
