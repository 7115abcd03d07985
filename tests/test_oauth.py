"""OAuth2/OIDC login end to end against a real OIDC provider (authlib server parts) on 127.0.0.1."""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from joserfc.jwk import RSAKey

from tests.helpers import assert_error
from tests.oidc_provider import IdpUser, OidcProvider

# authlib's server hooks warn about their own internal call signature (test provider side only).
pytestmark = pytest.mark.filterwarnings("ignore:The 'grant' parameter will become mandatory")

CALLBACK = "http://localhost/api/auth/oauth/corp/callback"
GITHUB_CALLBACK = "http://localhost/api/auth/oauth/github/callback"
PASSWORD = "correct horse battery"


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcProvider]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the test provider speaks plain HTTP on 127.0.0.1
    provider = OidcProvider([CALLBACK, GITHUB_CALLBACK]).start()
    yield provider
    provider.stop()


@pytest.fixture
def app(make_app, idp: OidcProvider):
    config = f"""
    auth:
      oauth:
        corp:
          type: oidc
          issuer: {idp.issuer}
          client_id: {idp.client.client_id}
          client_secret: {idp.client.client_secret}
        github:
          client_id: {idp.client.client_id}
          client_secret: {idp.client.client_secret}
          authorize_url: {idp.issuer}/authorize
          token_url: {idp.issuer}/token
          userinfo_url: {idp.issuer}/user
    """
    return make_app(config=config)


def start_login(c) -> tuple[str, dict[str, list[str]]]:
    """GET /api/auth/oauth/corp → the provider's authorize URL and its query."""
    resp = c.get("/api/auth/oauth/corp")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    return location, parse_qs(urlparse(location).query)


def at_provider(location: str, callback: str = CALLBACK) -> str:
    """The browser at the provider: it approves and redirects back; returns the callback path + query."""
    resp = requests.get(location, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    back = urlparse(resp.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == callback
    return f"{back.path}?{back.query}"


def login(c, idp: OidcProvider, user: IdpUser):
    idp.user = user
    location, _ = start_login(c)
    return c.get(at_provider(location))


def test_first_login_creates_a_verified_user_and_later_logins_find_it(app, idp):
    c = app.test_client()
    assert c.get("/api/auth/providers").get_json() == {"providers": ["corp", "github"]}
    location, query = start_login(c)
    assert location.startswith(idp.issuer + "/authorize")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["nonce"][0] and query["state"][0] and query["redirect_uri"] == [CALLBACK]
    assert "openid" in query["scope"][0].split()
    idp.user = IdpUser("sub-1", "Carol@Example.com", True, "Carol")
    resp = c.get(at_provider(location))
    assert resp.status_code == 200, resp.get_json()
    tokens = resp.get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert tokens["user"]["email"] == "carol@example.com" and tokens["user"]["verified"] is True
    assert idp.last_token_request.get("code_verifier")  # PKCE verifier sent with the code
    me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == tokens["user"]["id"]
    # the same provider account again, even after changing its email there: linked by subject
    again = login(c, idp, IdpUser("sub-1", "carol.new@example.com", True))
    assert again.status_code == 200 and again.get_json()["user"]["id"] == tokens["user"]["id"]


def test_github_style_login_uses_the_primary_verified_email(app, idp):
    c = app.test_client()
    idp.user = IdpUser("4242", "Gh@Example.com", True, "Octo Cat")
    resp = c.get("/api/auth/oauth/github")
    assert resp.status_code == 302
    query = parse_qs(urlparse(resp.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and "nonce" not in query
    done = c.get(at_provider(resp.headers["Location"], GITHUB_CALLBACK))
    assert done.status_code == 200, done.get_json()
    user = done.get_json()["user"]
    assert user["email"] == "gh@example.com" and user["verified"] is True
    # an unverified primary email is not enough
    idp.user = IdpUser("4343", "nope@example.com", False)
    resp = c.get("/api/auth/oauth/github")
    assert_error(c.get(at_provider(resp.headers["Location"], GITHUB_CALLBACK)), 401, "oauth_email_unverified")


def test_links_to_an_existing_verified_user_by_email(app, idp):
    svc = app.extensions["alyx"]
    admin = svc.auth.create_admin("dana@example.com", PASSWORD)  # verified
    c = app.test_client()
    resp = login(c, idp, IdpUser("sub-dana", "dana@example.com", True))
    assert resp.status_code == 200 and resp.get_json()["user"]["id"] == admin["id"]
    # the password still works too
    assert c.post("/api/auth/login", json={"email": "dana@example.com", "password": PASSWORD}).status_code == 200


def test_an_unverified_local_account_is_taken_over_by_the_proven_owner(app, idp):
    c = app.test_client()
    squatter = c.post("/api/auth/register", json={"email": "erin@example.com", "password": PASSWORD}).get_json()
    resp = login(c, idp, IdpUser("sub-erin", "erin@example.com", True))
    assert resp.status_code == 200 and resp.get_json()["user"]["id"] == squatter["user"]["id"]
    assert resp.get_json()["user"]["verified"] is True
    # the pre-registered password and its sessions are gone
    assert_error(c.post("/api/auth/login", json={"email": "erin@example.com", "password": PASSWORD}), 401)
    assert_error(c.get("/api/auth/me", headers={"Authorization": f"Bearer {squatter['access_token']}"}), 401)


def test_unverified_or_missing_provider_email_is_refused(app, idp):
    c = app.test_client()
    assert_error(login(c, idp, IdpUser("sub-x", "x@example.com", False)), 401, "oauth_email_unverified")
    assert_error(login(c, idp, IdpUser("sub-y", None)), 401, "oauth_email_unverified")
    assert app.extensions["alyx"].auth.user_by_email("x@example.com") is None


def test_state_is_checked_and_used_once(app, idp):
    c = app.test_client()
    idp.user = IdpUser("sub-f", "f@example.com", True)
    location, _ = start_login(c)
    callback = at_provider(location)
    # another browser (no state cookie) cannot complete this login
    other = app.test_client()
    assert_error(other.get(callback), 400, "oauth_state_mismatch")
    # a forged state is refused
    assert_error(c.get("/api/auth/oauth/corp/callback?code=abc&state=forged"), 400, "oauth_state_mismatch")
    assert c.get(callback).status_code == 200
    # replaying the callback (state consumed) fails
    c.set_cookie(key="alyx_oauth_state", value=parse_qs(urlparse(callback).query)["state"][0],
                 path="/api/auth/oauth/corp")
    assert_error(c.get(callback), 400, "oauth_state_invalid")


def test_pkce_is_enforced_by_the_provider_and_used_by_alyx(app, idp):
    c = app.test_client()
    idp.user = IdpUser("sub-g", "g@example.com", True)
    location, _ = start_login(c)
    callback = at_provider(location)
    code = parse_qs(urlparse(callback).query)["code"][0]
    # someone who intercepted the code but not the verifier cannot redeem it
    stolen = requests.post(f"{idp.issuer}/token", data={"grant_type": "authorization_code", "code": code,
                                                        "redirect_uri": CALLBACK},
                           auth=(idp.client.client_id, idp.client.client_secret), timeout=10)
    assert stolen.status_code == 400 and "code_verifier" in stolen.text


def test_an_id_token_signed_with_another_key_is_refused(app, idp):
    c = app.test_client()
    idp.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
    assert_error(login(c, idp, IdpUser("sub-h", "h@example.com", True)), 401, "oauth_failed")
    assert app.extensions["alyx"].auth.user_by_email("h@example.com") is None


def test_unknown_provider_and_provider_errors(app, idp):
    c = app.test_client()
    assert_error(c.get("/api/auth/oauth/nope"), 404)
    assert_error(c.get("/api/auth/oauth/corp/callback?error=access_denied&state=x"), 401, "oauth_denied")


def test_bad_provider_config_stops_start_up(make_app):
    from alyx.errors import ConfigError

    with pytest.raises(ConfigError, match="auth.oauth.corp"):
        make_app(config="auth:\n  oauth:\n    corp: {type: oidc, client_id: a, client_secret: b}\n")
