"""/api/auth/*: token shape, sessions, refresh rotation, token attacks, brute-force and rate limits,
signing keys, and the `alyx admin create` command (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alyx.config import load_config
from alyx.errors import ConfigError
from alyx.signing_keys import key_id, load_key_ring
from tests.conftest import ROOT, TEST_ENV, empty_tables, shared_app, write_project
from tests.helpers import assert_error

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def auth_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One app per backend for the tests that take `client`; each of them starts from empty tables."""
    with shared_app(request.param, tmp_path_factory.mktemp("auth")) as app:
        yield app


@pytest.fixture
def client(auth_app):
    empty_tables(auth_app)
    return auth_app.test_client()


def register(c, email="ann@example.com", password=PASSWORD, **fields):
    resp = c.post("/api/auth/register", json={"email": email, "password": password, **fields})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_register_login_me_and_the_token_shape(client):
    tokens = register(client, "Ann@Example.com", name="Ann")
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    user = tokens["user"]
    assert user["email"] == "ann@example.com" and user["role"] == "user" and user["verified"] is False
    assert user["name"] == "Ann" and "password_hash" not in user and "password" not in user
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "HS256" and header["kid"]
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.get_json() == user
    login = client.post("/api/auth/login", json={"email": "ANN@example.com", "password": PASSWORD})
    assert login.status_code == 200 and login.get_json()["user"]["id"] == user["id"]
    assert login.get_json()["refresh_token"] != tokens["refresh_token"]


def test_register_refuses_bad_input_and_self_chosen_roles(client):
    assert_error(client.post("/api/auth/register", json={"email": "a@b.co", "password": "short"}), 422,
                 "validation_failed")
    assert_error(client.post("/api/auth/register", json={"email": "nope", "password": PASSWORD}), 422)
    assert_error(client.post("/api/auth/register", json={"email": "a@b.co", "password": PASSWORD, "role": "admin"}),
                 403, "forbidden")
    assert_error(client.post("/api/auth/register", json={"email": "a@b.co", "password": PASSWORD,
                                                         "verified": True}), 403)
    assert_error(client.post("/api/auth/register", json={"email": "a@b.co", "password": PASSWORD,
                                                         "password_hash": "x"}), 422)
    assert_error(client.post("/api/auth/register", json={"email": "a@b.co", "password": PASSWORD,
                                                         "passwordConfirm": "other"}), 422)
    register(client, "a@b.co")
    assert_error(client.post("/api/auth/register", json={"email": "A@b.co", "password": PASSWORD}), 409, "conflict")
    assert_error(client.post("/api/auth/register", data="x", content_type="text/plain"), 415)


def test_me_needs_a_token_and_bad_tokens_are_401(client):
    assert_error(client.get("/api/auth/me"), 401, "unauthorized")
    for header in ("Bearer", "Basic abc", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer " + "x" * 5000):
        resp = client.get("/api/auth/me", headers={"Authorization": header})
        assert_error(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # A bad token is refused on every endpoint, not only /me (no silent downgrade to anonymous).
    assert_error(client.get("/api/collections/posts", headers=bearer("a.b.c")), 401, "invalid_token")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(
    st.text(max_size=300).map(lambda t: "Bearer " + t),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=", max_size=400)
    .map(lambda t: "Bearer " + t),
    st.lists(st.text(alphabet="abcdefABCDEF0123456789-_", min_size=0, max_size=80), min_size=3, max_size=3)
    .map(lambda parts: "Bearer " + ".".join(parts)),
))
def test_fuzzed_authorization_headers_are_401_never_500(client, header):
    try:
        header.encode("latin-1")
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in header):
        return  # control characters: the client refuses to send them
    resp = client.get("/api/collections/posts", headers={"Authorization": header})
    assert resp.status_code == 401, (header, resp.status_code, resp.get_data(as_text=True)[:200])
    assert_error(resp, 401)


def _forge(payload: dict, key: bytes | str, kid: str, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_token_attacks_expired_wrong_key_alg_none_tampered(make_app):
    app = make_app()
    c = app.test_client()
    tokens = register(c)
    good = tokens["access_token"]
    ring = app.extensions["alyx"].auth.keys
    claims = jwt.decode(good, ring.signing_key, algorithms=["HS256"], issuer="alyx")
    # expired, signed with the right key
    expired = _forge({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
                     ring.signing_key, ring.signing_kid)
    assert_error(c.get("/api/auth/me", headers=bearer(expired)), 401, "token_expired")
    # right kid, wrong key
    wrong = _forge(claims, "another-secret-that-is-long-enough-000000", ring.signing_kid)
    assert_error(c.get("/api/auth/me", headers=bearer(wrong)), 401, "invalid_token")
    # unknown kid
    assert_error(c.get("/api/auth/me", headers=bearer(_forge(claims, ring.signing_key, "nope"))), 401,
                 "invalid_token")
    # alg: none (unsigned), with and without our kid
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": ring.signing_kid}):
        unsigned = f"{_b64(header)}.{_b64({**claims, 'role': 'admin'})}."
        assert_error(c.get("/api/auth/me", headers=bearer(unsigned)), 401, "invalid_token")
    # tampered payload: keep header and signature, promote ourselves to admin
    head, _, sig = good.split(".")
    tampered = f"{head}.{_b64({**claims, 'role': 'admin'})}.{sig}"
    assert_error(c.get("/api/auth/me", headers=bearer(tampered)), 401, "invalid_token")
    assert_error(c.get("/api/collections/users", headers=bearer(tampered)), 401)
    # HS256 with the key but another token type or issuer
    assert_error(c.get("/api/auth/me", headers=bearer(_forge({**claims, "typ": "refresh"}, ring.signing_key,
                                                                ring.signing_kid))), 401)
    assert_error(c.get("/api/auth/me", headers=bearer(_forge({**claims, "iss": "evil"}, ring.signing_key,
                                                                ring.signing_kid))), 401)
    assert c.get("/api/auth/me", headers=bearer(good)).status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_session(client):
    first = register(client)
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.get_json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(second["access_token"])).status_code == 200
    # the rotated token is presented again: the whole session ends, including the newest tokens
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401,
                 "refresh_token_reused")
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401,
                 "session_revoked")
    assert_error(client.get("/api/auth/me", headers=bearer(second["access_token"])), 401, "session_revoked")
    # another session of the same user is untouched
    other = client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}).get_json()
    assert client.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 200
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": "made-up"}), 401, "invalid_token")
    assert_error(client.post("/api/auth/refresh", json={}), 400)


def test_refresh_works_with_an_expired_access_token_header(client):
    tokens = register(client)
    resp = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                       headers=bearer("expired.or.garbage"))
    assert resp.status_code == 200


def test_logout_revokes_by_refresh_token_or_bearer(client):
    one = register(client)
    assert client.post("/api/auth/logout", json={"refresh_token": one["refresh_token"]}).status_code == 204
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": one["refresh_token"]}), 401)
    assert_error(client.get("/api/auth/me", headers=bearer(one["access_token"])), 401, "session_revoked")
    two = client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}).get_json()
    assert client.post("/api/auth/logout", headers=bearer(two["access_token"])).status_code == 204
    assert_error(client.get("/api/auth/me", headers=bearer(two["access_token"])), 401)
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": two["refresh_token"]}), 401)
    assert_error(client.post("/api/auth/logout"), 401)


def test_changing_the_password_revokes_the_other_sessions(client):
    here = register(client)
    there = client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}).get_json()
    assert_error(client.post("/api/auth/password", json={"old_password": "wrong-one", "password": "new password 1"},
                             headers=bearer(here["access_token"])), 403)
    resp = client.post("/api/auth/password", json={"old_password": PASSWORD, "password": "new password 1"},
                       headers=bearer(here["access_token"]))
    assert resp.status_code == 204
    assert client.get("/api/auth/me", headers=bearer(here["access_token"])).status_code == 200
    assert_error(client.get("/api/auth/me", headers=bearer(there["access_token"])), 401, "session_revoked")
    assert_error(client.post("/api/auth/refresh", json={"refresh_token": there["refresh_token"]}), 401)
    assert_error(client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}), 401)
    assert client.post("/api/auth/login", json={"email": "ann@example.com",
                                                "password": "new password 1"}).status_code == 200
    assert_error(client.post("/api/auth/password", json={"password": "x" * 20}), 401)


def test_password_hash_never_leaves_and_cannot_be_written(make_app):
    schema = """
    collections:
      - name: users
        auth: true
        fields:
          - {name: name, type: string}
        rules: {list: "auth != null", view: "auth != null", update: "auth != null && auth.id == doc.id"}
    """
    app = make_app(schema)
    c = app.test_client()
    ann = register(c, "ann@example.com")
    h = bearer(ann["access_token"])
    uid = ann["user"]["id"]
    listed = c.get("/api/collections/users", headers=h).get_json()["items"]
    assert listed and all("password_hash" not in u for u in listed)
    assert "password_hash" not in c.get(f"/api/collections/users/{uid}", headers=h).get_json()
    assert_error(c.patch(f"/api/collections/users/{uid}", json={"password_hash": "$argon2id$x"}, headers=h), 422)
    assert_error(c.get("/api/collections/users", query_string={"filter": 'password_hash != ""'}, headers=h), 400)
    assert_error(c.get("/api/collections/users", query_string={"sort": "password_hash"}, headers=h), 400)
    assert_error(c.get("/api/collections/users", query_string={"fields": "password_hash"}, headers=h), 400)
    # nor can the owner promote themselves or mark themselves verified
    assert_error(c.patch(f"/api/collections/users/{uid}", json={"role": "admin"}, headers=h), 403, "forbidden")
    assert_error(c.patch(f"/api/collections/users/{uid}", json={"verified": True}, headers=h), 403)
    assert c.patch(f"/api/collections/users/{uid}", json={"name": "Ann B"}, headers=h).status_code == 200
    stored = app.extensions["alyx"].auth.user_by_email("ann@example.com")
    assert stored["password_hash"].startswith("$argon2id$") and stored["role"] == "user"


def test_changing_the_email_drops_verified(make_app):
    schema = """
    collections:
      - name: users
        auth: true
        rules: {view: "auth != null && auth.id == doc.id", update: "auth != null && auth.id == doc.id"}
    """
    app = make_app(schema)
    c = app.test_client()
    admin = app.extensions["alyx"].auth.create_admin("root@example.com", PASSWORD)
    root = c.post("/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}).get_json()
    ann = register(c)
    uid = ann["user"]["id"]
    assert admin["role"] == "admin"
    verified = c.patch(f"/api/collections/users/{uid}", json={"verified": True}, headers=bearer(root["access_token"]))
    assert verified.status_code == 200 and verified.get_json()["verified"] is True
    moved = c.patch(f"/api/collections/users/{uid}", json={"email": "new@example.com"},
                    headers=bearer(ann["access_token"]))
    assert moved.status_code == 200 and moved.get_json()["verified"] is False


def test_login_backoff_per_account_gives_429_with_retry_after(make_app):
    app = make_app(env={"ALYX_AUTH_LOGIN_MAX_FAILURES_ACCOUNT": "3"})
    c = app.test_client()
    register(c)
    for _ in range(3):
        assert_error(c.post("/api/auth/login", json={"email": "ann@example.com", "password": "wrong pass"}), 401,
                     "invalid_credentials")
    locked = c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    error = assert_error(locked, 429, "rate_limited")
    assert int(locked.headers["Retry-After"]) >= 1 and error["details"]["retry_after"] >= 1
    # another account from the same address is not locked (the per-IP threshold is higher)
    register(c, "bob@example.com")
    assert c.post("/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD}).status_code == 200
    # an unknown account gets the same answer as a wrong password
    assert_error(c.post("/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}), 401,
                 "invalid_credentials")


def test_login_backoff_per_ip(make_app):
    app = make_app(env={"ALYX_AUTH_LOGIN_MAX_FAILURES_IP": "4"})
    c = app.test_client()
    register(c)
    for i in range(4):
        assert_error(c.post("/api/auth/login", json={"email": f"u{i}@example.com", "password": "wrong pass"}), 401)
    resp = c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert_error(resp, 429)
    other_ip = c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD},
                      environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other_ip.status_code == 200


def test_api_rate_limit(make_app):
    c = make_app(env={"ALYX_API_RATE_LIMIT": "5", "ALYX_API_RATE_LIMIT_WINDOW": "3600"}).test_client()
    for _ in range(5):
        assert c.get("/api/collections/posts").status_code == 200
    resp = c.get("/api/collections/posts")
    assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) > 0
    assert c.get("/api/collections/posts", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 200


def test_rate_limit_behind_a_proxy_uses_x_forwarded_for(make_app):
    c = make_app(env={"ALYX_API_RATE_LIMIT": "2", "ALYX_API_RATE_LIMIT_WINDOW": "3600",
                      "ALYX_SERVER_PROXY_COUNT": "1"}).test_client()
    for _ in range(2):
        assert c.get("/api/health", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert_error(c.get("/api/health", headers={"X-Forwarded-For": "1.1.1.1"}), 429)
    assert c.get("/api/health", headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200


# -- signing keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite"])
def test_signing_key_rules(tmp_path, backend):
    project = write_project(tmp_path / "p", "")
    with pytest.raises(ConfigError, match="ALYX_AUTH_SECRET"):
        load_key_ring(load_config(project, env={}))  # production is the default: no generated key
    with pytest.raises(ConfigError, match="at least 32"):
        load_key_ring(load_config(project, env={"JWT_SECRET": "short"}))
    with pytest.raises(ConfigError, match="empty"):
        load_key_ring(load_config(project, env={"ALYX_AUTH_SECRET": "   "}))
    ring = load_key_ring(load_config(project, env={"JWT_SECRET": "j" * 40}))
    assert ring.signing_kid == key_id("j" * 40)
    # development: a key is generated once in the data folder and reused
    dev = load_key_ring(load_config(project, env={"ALYX_SERVER_ENVIRONMENT": "development"}))
    assert (project / "data" / "auth.key").stat().st_mode & 0o777 == 0o600
    assert load_key_ring(load_config(project, env={"ALYX_SERVER_ENVIRONMENT": "development"})) == dev
    # key file: the first line signs, the others verify
    (project / "keys.txt").write_text("a" * 40 + "\n" + "b" * 40 + "\n")
    ring = load_key_ring(load_config(project, env={"ALYX_AUTH_KEY_FILE": "keys.txt"}))
    assert ring.signing_kid == key_id("a" * 40) and key_id("b" * 40) in ring.keys
    (project / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="no key"):
        load_key_ring(load_config(project, env={"ALYX_AUTH_KEY_FILE": "empty.txt"}))


def test_the_app_refuses_to_start_in_production_without_a_secret(make_app):
    with pytest.raises(ConfigError, match="no auth secret"):
        make_app(env={"ALYX_SERVER_ENVIRONMENT": "production"})


@pytest.mark.parametrize("backend", ["sqlite"])
def test_gunicorn_without_a_secret_stops_at_once(tmp_path, backend):
    project = write_project(tmp_path / "nosecret", "")
    env = {k: v for k, v in os.environ.items() if k not in ("ALYX_AUTH_SECRET", "JWT_SECRET")}
    env.update({"ALYX_PROJECT_DIR": str(project), "ALYX_SERVER_ENVIRONMENT": "production"})
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", "1",
                           "-b", "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "Alyx cannot start: no auth secret" in done.stdout + done.stderr


def test_key_rotation_keeps_old_tokens_valid(make_app, tmp_path):
    old, new = "o" * 40, "n" * 40
    project = tmp_path / "rot"
    c1 = make_app(project=project, env={"ALYX_AUTH_SECRET": old}).test_client()
    tokens = register(c1)
    c2 = make_app(project=project, env={"ALYX_AUTH_SECRET": new, "ALYX_AUTH_PREVIOUS_SECRETS": old}).test_client()
    assert c2.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    fresh = c2.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == key_id(new)
    c3 = make_app(project=project, env={"ALYX_AUTH_SECRET": new}).test_client()  # old key retired
    assert_error(c3.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401, "invalid_token")
    assert c3.get("/api/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_registration_closed(make_app):
    c = make_app(env={"ALYX_AUTH_REGISTRATION": "closed"}).test_client()
    assert_error(c.post("/api/auth/register", json={"email": "a@b.co", "password": PASSWORD}), 403)


def test_a_declared_create_rule_decides_registration(make_app):
    schema = """
    collections:
      - name: users
        auth: true
        rules: {create: "doc.email.endsWith('@corp.example')"}
    """
    c = make_app(schema, env={"ALYX_AUTH_REGISTRATION": "closed"}).test_client()
    assert_error(c.post("/api/auth/register", json={"email": "a@gmail.example", "password": PASSWORD}), 403)
    assert c.post("/api/auth/register", json={"email": "a@corp.example", "password": PASSWORD}).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_admin_create(tmp_path, backend):
    project = write_project(tmp_path / "cli", "")
    env = {**TEST_ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def run(*args: str, stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "alyx", "--project", str(project), "admin", "create", *args],
                              input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

    done = run("Root@Example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "root@example.com" in done.stdout
    again = run("root@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 2 and "--promote" in again.stderr
    short = run("x@example.com", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    from alyx.app import create_app

    app = create_app(load_config(project, env=TEST_ENV))
    try:
        c = app.test_client()
        tokens = c.post("/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}).get_json()
        assert tokens["user"]["role"] == "admin" and tokens["user"]["verified"] is True
    finally:
        app.extensions["alyx"].close()


def test_a_wrong_password_raises_nothing_in_the_hash_pool(monkeypatch, tmp_path) -> None:
    """Regression (found by the fuzz pass): argon2's mismatch error was raised inside gevent's threadpool,
    which printed a traceback to the server log for every failed login."""
    from alyx import passwords

    def pool_that_must_not_see_errors(fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # what gevent's threadpool would print
            pytest.fail(f"{fn!r} raised {exc!r} inside the pool")

    monkeypatch.setattr(passwords, "run_blocking", pool_that_must_not_see_errors)
    checker = passwords.Passwords(load_config(write_project(tmp_path, ""), env=TEST_ENV))
    stored = checker.hash("right password")
    assert checker.verify(stored, "right password")
    assert not checker.verify(stored, "wrong password")
    assert not checker.verify("not-a-hash", "anything")
    assert not checker.verify(None, "anything")
OWNED_SCHEMA = """
collections:
  - name: users
    auth: true
    rules: {view: "auth != null && auth.id == doc.id", update: "auth != null && auth.id == doc.id",
            delete: "auth != null && auth.id == doc.id"}
  - name: notes
    fields:
      - {name: owner, type: string}
      - {name: text, type: string}
    rules: {list: "auth != null && auth.id == doc.owner", view: "auth != null && auth.id == doc.owner",
            create: "auth != null", update: "auth != null && auth.id == doc.owner"}
"""


def test_auth_ids_are_server_made_and_a_deleted_user_cannot_be_taken_over(make_app):
    app = make_app(OWNED_SCHEMA)
    c = app.test_client()
    auth = app.extensions["alyx"].auth
    auth.create_admin("root@example.com", PASSWORD)
    root = c.post("/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}).get_json()
    # the client can never choose an auth record's id: not at register, not as an admin
    assert_error(c.post("/api/auth/register", json={"email": "x@example.com", "password": PASSWORD,
                                                   "id": "chosen000000001"}), 422, "validation_failed")
    assert_error(c.post("/api/collections/users", json={"email": "y@example.com", "id": "chosen000000002"},
                        headers=bearer(root["access_token"])), 422, "validation_failed")
    ann = register(c)
    uid, h = ann["user"]["id"], bearer(ann["access_token"])
    other = c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}).get_json()
    note = c.post("/api/collections/notes", json={"owner": uid, "text": "private"}, headers=h)
    assert note.status_code == 201
    assert c.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 200  # cached now
    # deleting the user ends every session at once (not after the session cache's few seconds)
    assert c.delete(f"/api/collections/users/{uid}", headers=h).status_code == 204
    for tokens in (ann, other):
        assert_error(c.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401, "session_revoked")
        assert_error(c.get("/api/collections/notes", headers=bearer(tokens["access_token"])), 401,
                     "session_revoked")
        assert_error(c.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401,
                     "session_revoked")
    # registering again under the same id is impossible, so the deleted user's grants stay unreachable
    assert_error(c.post("/api/auth/register", json={"email": "ann@example.com", "password": PASSWORD, "id": uid}),
                 422)
    again = register(c)
    assert again["user"]["id"] != uid
    assert c.get("/api/collections/notes", headers=bearer(again["access_token"])).get_json()["items"] == []
    assert_error(c.get("/api/auth/me", headers=bearer(ann["access_token"])), 401, "session_revoked")
    with app.extensions["alyx"].db.connection():
        session = app.extensions["alyx"].system.session
        reasons = {row.revoked_reason for row in session.select().where(session.user_id == uid)}
    assert reasons == {"user deleted"}


def test_other_collections_accept_client_ids(client):
    made = client.post("/api/collections/comments", json={"id": "mychosenid00001", "text": "x",
                                                           "post": client.post("/api/collections/posts",
                                                                               json={"title": "t"}).get_json()["id"]})
    assert made.status_code == 201 and made.get_json()["id"] == "mychosenid00001"


def test_email_case_is_normalised_on_every_write_path(make_app):
    app = make_app(OWNED_SCHEMA)
    c = app.test_client()
    svc = app.extensions["alyx"]
    svc.auth.create_admin("Root@Example.com", PASSWORD)
    root = c.post("/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}).get_json()
    hr = bearer(root["access_token"])
    # an admin-created account with a mixed-case address is stored lower-case (and can then sign in by OAuth/reset)
    made = c.post("/api/collections/users", json={"email": "Bob@Example.COM"}, headers=hr)
    assert made.status_code == 201 and made.get_json()["email"] == "bob@example.com"
    ann = register(c, "ann@example.com")
    uid, h = ann["user"]["id"], bearer(ann["access_token"])
    # PATCH to another user's address in other case: a conflict, not a second account with that address
    assert_error(c.patch(f"/api/collections/users/{uid}", json={"email": "ROOT@example.com"}, headers=h), 409,
                 "conflict")
    moved = c.patch(f"/api/collections/users/{uid}", json={"email": "Ann.New@Example.com"}, headers=h)
    assert moved.status_code == 200 and moved.get_json()["email"] == "ann.new@example.com"
    assert c.post("/api/auth/login", json={"email": "ANN.NEW@example.com", "password": PASSWORD}).status_code == 200
    # server-side writes (the records service with check_rule=False) are normalised too
    with svc.db.connection():
        written = svc.records.update("users", uid, {"email": "MiXeD@Example.com"}, None, check_rule=False)
    assert written["email"] == "mixed@example.com"


def test_the_email_index_is_case_insensitive_in_the_database(make_app):
    app = make_app(OWNED_SCHEMA)
    svc = app.extensions["alyx"]
    register(app.test_client(), "ann@example.com")
    import peewee
    with svc.db.connection(), pytest.raises(peewee.IntegrityError):
        with svc.db.write():
            svc.db.execute("INSERT INTO users (id, created_at, updated_at, email, role, verified) "
                           "VALUES ('raw000000000001', '2020-01-01', '2020-01-01', 'ANN@example.com', 'user', "
                           + ("0" if svc.db.is_sqlite else "false") + ")")


def test_the_email_migration_lowercases_and_reports_collisions(make_app, tmp_path):
    from alyx.errors import ConfigError as Refused

    app = make_app(OWNED_SCHEMA)
    svc = app.extensions["alyx"]
    falsy = "0" if svc.db.is_sqlite else "false"
    with svc.db.connection(), svc.db.write():
        svc.db.execute("DROP INDEX ci_users_email")
        for i, email in enumerate(("Carl@Example.com", "dora@example.com", "DORA@example.com")):
            svc.db.execute("INSERT INTO users (id, created_at, updated_at, email, role, verified) VALUES "
                           f"('old00000000000{i}', '2020-01-01', '2020-01-01', '{email}', 'user', {falsy})")
    app.extensions["alyx"].close()
    with pytest.raises(Refused) as refused:
        make_app(OWNED_SCHEMA)
    message = str(refused.value)
    assert "dora@example.com" in message and "old000000000001" in message and "old000000000002" in message
    assert "carl" not in message.lower()
    # once the duplicate is resolved, the next start lower-cases the rest and adds the index
    env = app.extensions["alyx"]
    del env
    from alyx.db import Database
    db = Database(load_config(tmp_path / "project", {**TEST_ENV, **_database_env(app)}))
    with db.connection(), db.write():
        db.execute("DELETE FROM users WHERE id = 'old000000000002'")
    db.close()
    fixed = make_app(OWNED_SCHEMA).extensions["alyx"]
    assert fixed.auth.user_by_email("carl@example.com")["id"] == "old000000000000"


def _database_env(app) -> dict[str, str]:
    url = app.extensions["alyx"].config.database_url
    return {"ALYX_DATABASE_URL": url} if url else {}


def test_failed_logins_from_elsewhere_do_not_lock_the_owner_out(make_app):
    app = make_app(env={"ALYX_AUTH_LOGIN_MAX_FAILURES_ACCOUNT": "3"})
    c = app.test_client()
    register(c)
    attacker = {"REMOTE_ADDR": "10.6.6.6"}
    for _ in range(5):
        c.post("/api/auth/login", json={"email": "ann@example.com", "password": "wrong pass"}, environ_base=attacker)
    assert_error(c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD},
                        environ_base=attacker), 429, "rate_limited")
    owner = c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD},
                   environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert owner.status_code == 200  # the account is backed off per (account, source), not for everyone


def test_registration_is_rate_limited_per_source_by_default(make_app):
    from alyx.config import Config

    assert Config().auth_registration_rate_limit > 0  # on by default
    c = make_app(env={"ALYX_AUTH_REGISTRATION_RATE_LIMIT": "2"}).test_client()
    register(c, "a1@example.com")
    register(c, "a2@example.com")
    refused = c.post("/api/auth/register", json={"email": "a3@example.com", "password": PASSWORD})
    error = assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1 and error["details"]["retry_after"] >= 1
    other = c.post("/api/auth/register", json={"email": "a3@example.com", "password": PASSWORD},
                   environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert other.status_code == 201
