"""/api/admin/users (alyx/blueprints/users.py): admins create accounts (admins too) with a password, and end
every session of a user — on SQLite and PostgreSQL, admins only, in the one error shape."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import BLOG_SCHEMA, TEST_ENV, AppMaker
from tests.helpers import assert_error

ADMIN = {"X-Test-User": "admin"}
PASSWORD = "correct horse battery"


@pytest.fixture
def app(tmp_path: Path, database_env: dict[str, str]) -> Iterator[Flask]:
    maker = AppMaker(tmp_path, {**TEST_ENV, **database_env}, test_users=True)
    yield maker(BLOG_SCHEMA)
    maker.close()


def login(c: FlaskClient, email: str, password: str = PASSWORD) -> dict:
    r = c.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.json
    return r.json


def test_an_admin_creates_an_admin_who_can_sign_in(app: Flask) -> None:
    c = app.test_client()
    r = c.post("/api/admin/users", headers=ADMIN,
               json={"email": "Boss@Example.com", "password": PASSWORD, "role": "admin", "verified": True, "name": "B"})
    assert r.status_code == 201, r.json
    assert r.json["email"] == "boss@example.com" and r.json["role"] == "admin" and r.json["verified"] is True
    assert r.json["name"] == "B" and "password" not in r.json and "password_hash" not in r.json
    tokens = login(c, "boss@example.com")
    assert tokens["user"]["role"] == "admin"


def test_a_user_without_a_password_and_the_refusals(app: Flask) -> None:
    c = app.test_client()
    plain = c.post("/api/admin/users", headers=ADMIN, json={"email": "nopass@example.com"})
    assert plain.status_code == 201 and plain.json["role"] == "user" and plain.json["verified"] is False
    assert_error(c.post("/api/auth/login", json={"email": "nopass@example.com", "password": PASSWORD}), 401)
    assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "NOPASS@example.com"}), 409)
    short = assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "s@example.com", "password": "x"}),
                         422, "validation_failed")
    assert "password" in short["details"]
    bad = assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "not an email", "password": PASSWORD}),
                       422)
    assert "email" in bad["details"]
    assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "r@example.com", "role": "god"}), 422)
    assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "i@example.com", "id": "a" * 15}), 422)
    assert_error(c.post("/api/admin/users", headers=ADMIN, json=["not", "an", "object"]), 400)
    assert_error(c.post("/api/admin/users", headers=ADMIN, data="email=x", content_type="text/plain"), 415)


def test_only_admins_create_users_or_revoke_sessions(app: Flask) -> None:
    c = app.test_client()
    body = {"email": "x@example.com", "password": PASSWORD, "role": "admin"}
    assert_error(c.post("/api/admin/users", json=body), 401)
    assert_error(c.post("/api/admin/users", json=body, headers={"X-Test-User": "user"}), 403)
    assert_error(c.delete("/api/admin/users/user00000000001/sessions"), 401)
    assert_error(c.delete("/api/admin/users/user00000000001/sessions", headers={"X-Test-User": "user"}), 403)
    assert c.post("/api/auth/login", json={"email": "x@example.com", "password": PASSWORD}).status_code == 401


def test_revoking_all_sessions_ends_every_refresh_token(app: Flask) -> None:
    c = app.test_client()
    registered = c.post("/api/auth/register", json={"email": "ann@example.com", "password": PASSWORD})
    assert registered.status_code == 201
    user_id = registered.json["user"]["id"]
    second = login(c, "ann@example.com")
    r = c.delete(f"/api/admin/users/{user_id}/sessions", headers=ADMIN)
    assert r.status_code == 200 and r.json == {"revoked": 2}
    for tokens in (registered.json, second):
        assert_error(c.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert c.delete(f"/api/admin/users/{user_id}/sessions", headers=ADMIN).json == {"revoked": 0}
    login(c, "ann@example.com")  # the account itself is untouched


@pytest.mark.parametrize("user_id", ["nosuchuser0000", "x\x00y", "é" * 15, "a" * 300])
def test_revoking_sessions_of_no_such_user_is_a_404(app: Flask, user_id: str) -> None:
    assert_error(app.test_client().delete(f"/api/admin/users/{user_id}/sessions", headers=ADMIN), 404)


@pytest.mark.parametrize("field", ["role", "verified"])
def test_role_and_verified_are_never_null(app: Flask, field: str) -> None:
    """Omitted they take their default; null is refused, on create and on a REST update of the user."""
    c = app.test_client()
    error = assert_error(c.post("/api/admin/users", headers=ADMIN, json={"email": "n@example.com", field: None}), 422)
    assert field in error["details"]
    made = c.post("/api/admin/users", headers=ADMIN, json={"email": "m@example.com"})
    assert made.status_code == 201 and made.json["role"] == "user" and made.json["verified"] is False
    error = assert_error(c.patch(f"/api/collections/users/{made.json['id']}", headers=ADMIN, json={field: None}), 422)
    assert field in error["details"]
    assert c.get(f"/api/collections/users/{made.json['id']}", headers=ADMIN).json[field] is not None
