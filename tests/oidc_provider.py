"""A real OpenID Connect provider for tests, built from authlib's server parts, served on 127.0.0.1.

Authorization code flow with PKCE (required) and nonce (required), RS256 ID tokens from a JWKS,
discovery document, userinfo. "Who is signed in at the provider" is `provider.user`, which a test
sets; the authorize endpoint approves at once (no consent page).
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server


@dataclass
class IdpUser:
    sub: str
    email: str | None
    email_verified: bool = True
    name: str = "Test User"


@dataclass
class _Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = ("openid", "email", "profile", "read:user", "user:email")
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: IdpUser
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class _Token:
    access_token: str
    scope: str
    user: IdpUser
    client_id: str
    expires_at: float

    def check_client(self, client: Any) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return 3600

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def is_revoked(self) -> bool:
        return False


class OidcProvider:
    """Start with `OidcProvider(redirect_uri).start()`; `issuer` is its base URL; `stop()` when done."""

    def __init__(self, redirect_uris: list[str], client_id: str = "alyx-test", client_secret: str = "s3cret") -> None:
        self.client = _Client(client_id, client_secret, redirect_uris)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"},
                                       private=True)
        self.rogue_key: RSAKey | None = None  # when set, ID tokens are signed with a key not in the JWKS
        self.user: IdpUser | None = None
        self.codes: dict[str, _Code] = {}
        self.tokens: dict[str, _Token] = {}
        self.last_token_request: dict[str, str] = {}
        self.app = self._build_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)  # stop() waits one poll interval

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def _build_app(self) -> Flask:
        provider = self
        app = Flask("test-oidc-provider")

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                payload = request.payload
                provider.codes[code] = _Code(code, request.client.get_client_id(), payload.redirect_uri,
                                             payload.scope, payload.data.get("nonce"),
                                             payload.data.get("code_challenge"),
                                             payload.data.get("code_challenge_method"), request.user)

            def query_authorization_code(self, code: str, client: Any) -> _Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.get_client_id() else None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> IdpUser:
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: Any) -> RSAKey:
                return provider.rogue_key or provider.key

            def get_client_algorithm(self, client: Any) -> str:
                return "RS256"

            def get_encode_header(self, client: Any) -> dict[str, str]:
                return {"alg": "RS256", "kid": "test-key-1"}

            def get_client_claims(self, client: Any) -> dict[str, Any]:
                return {"iss": provider.issuer, "aud": [client.get_client_id()]}

            def generate_user_info(self, user: IdpUser, scope: str) -> UserInfo:
                info = UserInfo(sub=user.sub, name=user.name)
                if "email" in scope and user.email is not None:
                    info["email"] = user.email
                    info["email_verified"] = user.email_verified
                return info

        def save_token(token: dict[str, Any], request: Any) -> None:
            provider.tokens[token["access_token"]] = _Token(token["access_token"], token.get("scope", ""),
                                                            request.user, request.client.get_client_id(),
                                                            time.time() + 3600)

        server = AuthorizationServer(app, query_client=lambda cid: provider.client
                                     if cid == provider.client.client_id else None, save_token=save_token)
        server.register_grant(CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)])

        class Validator(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> _Token | None:
                return provider.tokens.get(token_string)

        protect = ResourceProtector()
        protect.register_token_validator(Validator())

        @app.get("/.well-known/openid-configuration")
        def discovery():
            base = provider.issuer
            return jsonify({"issuer": base, "authorization_endpoint": f"{base}/authorize",
                            "token_endpoint": f"{base}/token", "userinfo_endpoint": f"{base}/userinfo",
                            "jwks_uri": f"{base}/jwks", "response_types_supported": ["code"],
                            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                            "code_challenge_methods_supported": ["S256"]})

        @app.get("/jwks")
        def jwks():
            return jsonify({"keys": [provider.key.as_dict(private=False)]})

        @app.get("/authorize")
        def authorize():
            if provider.user is None:
                return jsonify({"error": "nobody is signed in at the provider"}), 400
            return server.create_authorization_response(grant_user=provider.user)

        @app.post("/token")
        def token():
            from flask import request

            provider.last_token_request = request.form.to_dict()
            return server.create_token_response()

        @app.get("/userinfo")
        @protect("openid")
        def userinfo():
            from authlib.integrations.flask_oauth2 import current_token

            user = current_token.user
            return jsonify({"sub": user.sub, "email": user.email, "email_verified": user.email_verified,
                            "name": user.name})

        # GitHub-shaped profile endpoints (plain OAuth2, no ID token), for `type: github` providers.
        @app.get("/user")
        @protect()
        def github_user():
            from authlib.integrations.flask_oauth2 import current_token

            user = current_token.user
            return jsonify({"id": int(user.sub) if user.sub.isdigit() else user.sub, "login": "octo",
                            "name": user.name})

        @app.get("/user/emails")
        @protect()
        def github_emails():
            from authlib.integrations.flask_oauth2 import current_token

            user = current_token.user
            emails = [{"email": "other@example.com", "primary": False, "verified": True}]
            if user.email:
                emails.append({"email": user.email, "primary": True, "verified": user.email_verified})
            return jsonify(emails)

        return app
