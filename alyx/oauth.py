"""OAuth2 / OpenID Connect login (authlib client): GitHub, Google and any OIDC provider from alyx.yaml.

Flow: `start` stores a random state (hashed), a PKCE verifier and an OIDC nonce server-side and
returns the provider's authorize URL; `finish` consumes that state once, exchanges the code with
the verifier, verifies the ID token (signature from the provider's JWKS, issuer, audience, expiry,
nonce), then finds or creates the user: by provider subject first, else by a *verified* email.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session

from alyx.auth import USERS, AccountStores, AuthService, Client, sha256_hex
from alyx.clock import utcnow
from alyx.db import dict_row
from alyx.errors import AlyxError, ConfigError
from alyx.records import normalize_email
from alyx.schema import Schema

log = logging.getLogger("alyx.oauth")

HTTP_TIMEOUT = 10
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"]
_PROVIDER_KEYS = {"type", "client_id", "client_secret", "issuer", "scope", "authorize_url", "token_url",
                  "userinfo_url", "name"}


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None


@dataclass
class Provider:
    """One configured provider: `github`, or OIDC (Google is OIDC at accounts.google.com)."""

    name: str
    kind: str  # github | oidc
    client_id: str
    client_secret: str
    scope: str
    issuer: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None
    jwks_uri: str | None = None


def load_providers(config: Any) -> dict[str, Provider]:
    """auth.oauth in alyx.yaml → providers; client secrets may come from ALYX_AUTH_OAUTH_<NAME>_CLIENT_SECRET."""
    raw = config.auth_oauth or {}
    providers: dict[str, Provider] = {}
    for name, spec in raw.items():
        where = f"auth.oauth.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping with client_id and client_secret")
        unknown = sorted(set(spec) - _PROVIDER_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected: {', '.join(sorted(_PROVIDER_KEYS))})")
        kind = spec.get("type") or ("github" if name == "github" else "oidc")
        if kind not in ("github", "oidc"):
            raise ConfigError(f"{where}.type: expected github or oidc, got {kind!r}")
        secret = os.environ.get(f"ALYX_AUTH_OAUTH_{name.upper()}_CLIENT_SECRET") or spec.get("client_secret")
        if not spec.get("client_id") or not secret:
            raise ConfigError(f"{where}: client_id and client_secret are required")
        issuer = spec.get("issuer") or ("https://accounts.google.com" if name == "google" else None)
        if kind == "oidc" and not issuer:
            raise ConfigError(f"{where}.issuer: OIDC providers need an issuer URL (its discovery document is read "
                              "from <issuer>/.well-known/openid-configuration)")
        if kind == "github":
            provider = Provider(name, kind, str(spec["client_id"]), str(secret),
                                spec.get("scope") or "read:user user:email",
                                authorize_url=spec.get("authorize_url") or "https://github.com/login/oauth/authorize",
                                token_url=spec.get("token_url") or "https://github.com/login/oauth/access_token",
                                userinfo_url=spec.get("userinfo_url") or "https://api.github.com/user")
        else:
            provider = Provider(name, kind, str(spec["client_id"]), str(secret),
                                spec.get("scope") or "openid email profile", issuer=str(issuer).rstrip("/"))
        providers[name] = provider
    return providers


@dataclass(eq=False)
class OAuthService(AccountStores):
    """The OAuth2/OIDC login flows of the configured providers."""

    STATE_TTL: ClassVar[int] = 600

    schema: Schema
    auth: AuthService

    def __post_init__(self) -> None:
        self.providers = load_providers(self.config)
        self._discovery_lock = threading.Lock()

    def provider_names(self) -> list[str]:
        return sorted(self.providers)

    def provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise AlyxError("not_found", f"No OAuth provider {name!r} is configured.", 404)
        if provider.kind == "oidc" and provider.token_url is None:
            self._discover(provider)
        return provider

    def _discover(self, provider: Provider) -> None:
        """Read <issuer>/.well-known/openid-configuration once (endpoints and JWKS location)."""
        with self._discovery_lock:
            if provider.token_url is not None:
                return
            url = f"{provider.issuer}/.well-known/openid-configuration"
            try:
                response = requests.get(url, timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                meta = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise AlyxError("oauth_unavailable", f"Cannot read the discovery document of {provider.name!r}: "
                                                     f"{exc}", 502) from None
            if meta.get("issuer", "").rstrip("/") != provider.issuer:
                raise AlyxError("oauth_unavailable", f"{provider.name!r}: discovery issuer {meta.get('issuer')!r} is "
                                                     f"not the configured {provider.issuer!r}", 502)
            provider.authorize_url = meta["authorization_endpoint"]
            provider.userinfo_url = meta.get("userinfo_endpoint")
            provider.jwks_uri = meta["jwks_uri"]
            provider.token_url = meta["token_endpoint"]

    def _session(self, provider: Provider, redirect_uri: str) -> OAuth2Session:
        return OAuth2Session(provider.client_id, provider.client_secret, scope=provider.scope,
                             redirect_uri=redirect_uri, code_challenge_method="S256")

    # -- the two legs -------------------------------------------------------------------------------
    def start(self, name: str, redirect_uri: str) -> tuple[str, str]:
        """(authorize URL, state): the state, verifier and nonce are kept server-side for one use."""
        provider = self.provider(name)
        state, verifier, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(24)
        states = self.system.oauth_state
        now = utcnow()
        with self.db.connection(), self.db.write():
            states.delete().where(states.expires_at < now).execute()
            states.insert(state_hash=sha256_hex(state), provider=name, code_verifier=verifier, nonce=nonce,
                          redirect_uri=redirect_uri, expires_at=now + dt.timedelta(seconds=self.STATE_TTL)).execute()
        extra = {"nonce": nonce} if provider.kind == "oidc" else {}
        url, _ = self._session(provider, redirect_uri).create_authorization_url(
            provider.authorize_url, state=state, code_verifier=verifier, **extra)
        return url, state

    def finish(self, name: str, state: str, code: str, client: Client) -> dict[str, Any]:
        """Consume the state, exchange the code (PKCE), identify the user, sign them in."""
        provider = self.provider(name)
        states = self.system.oauth_state
        with self.db.connection(), self.db.write():
            pending = states.get_or_none((states.state_hash == sha256_hex(state)) & (states.provider == name))
            if pending is not None:
                states.delete().where(states.state_hash == pending.state_hash).execute()
        if pending is None or pending.expires_at < utcnow():
            raise AlyxError("oauth_state_invalid", "The OAuth login expired or was already used; start again.", 400)
        if not code:
            raise AlyxError("bad_request", "The provider sent no authorization code.", 400)
        session = self._session(provider, pending.redirect_uri)
        try:
            token = session.fetch_token(provider.token_url, code=code, code_verifier=pending.code_verifier,
                                        timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
        except Exception as exc:  # authlib raises OAuthError, requests its own: both mean the exchange failed
            log.warning("oauth %s: code exchange failed: %s", name, exc)
            raise AlyxError("oauth_failed", f"The code exchange with {name!r} failed.", 401) from None
        if provider.kind == "github":
            identity = self._github_identity(session, provider)
        else:
            identity = self._oidc_identity(session, provider, token, pending.nonce)
        user = self._user_for(provider, identity)
        return self.auth.start_session(user, f"oauth:{name}", client)

    # -- identities ---------------------------------------------------------------------------------
    def _oidc_identity(self, session: OAuth2Session, provider: Provider, token: Mapping[str, Any],
                       nonce: str) -> Identity:
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AlyxError("oauth_failed", f"{provider.name!r} returned no ID token.", 401)
        claims = self._verify_id_token(provider, id_token)
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
            raise AlyxError("oauth_failed", "The ID token's nonce does not match this login.", 401)
        info = dict(claims)
        if provider.userinfo_url and not info.get("email"):
            try:
                response = session.get(provider.userinfo_url, timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                userinfo = response.json()
            except (requests.RequestException, ValueError):
                userinfo = {}
            if userinfo.get("sub") == claims["sub"]:  # OIDC Core 5.3.2: must match the ID token
                info.update({k: v for k, v in userinfo.items() if k != "sub"})
        verified = info.get("email_verified") is True or info.get("email_verified") == "true"
        email = info.get("email") if isinstance(info.get("email"), str) else None
        return Identity(str(claims["sub"]), email, verified, info.get("name") if isinstance(info.get("name"), str)
                        else None)

    def _verify_id_token(self, provider: Provider, id_token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
            if not provider.jwks_uri:
                raise ValueError("the provider has no jwks_uri")
            response = requests.get(provider.jwks_uri, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json())
            key = next((k for k in keys.keys if header.get("kid") in (None, k.key_id)), None)
            if key is None:
                raise jwt.InvalidTokenError("no key in the provider's JWKS matches the token's kid")
            return jwt.decode(id_token, key.key, algorithms=[a for a in ID_TOKEN_ALGORITHMS],
                              audience=provider.client_id, issuer=provider.issuer,
                              options={"require": ["exp", "iat", "sub", "aud", "iss"]}, leeway=30)
        except (jwt.InvalidTokenError, jwt.PyJWKError, jwt.PyJWKSetError, requests.RequestException,
                ValueError) as exc:
            log.warning("oauth %s: ID token rejected: %s", provider.name, exc)
            raise AlyxError("oauth_failed", f"The ID token from {provider.name!r} is not valid.", 401) from None

    def _github_identity(self, session: OAuth2Session, provider: Provider) -> Identity:
        if not provider.userinfo_url:
            raise AlyxError("oauth_failed", "Could not read the GitHub profile.", 401)
        try:
            user = session.get(provider.userinfo_url, timeout=HTTP_TIMEOUT).json()
            emails = session.get(provider.userinfo_url.rstrip("/") + "/emails", timeout=HTTP_TIMEOUT).json()
        except (requests.RequestException, ValueError):
            raise AlyxError("oauth_failed", "Could not read the GitHub profile.", 401) from None
        if not isinstance(user, dict) or "id" not in user:
            raise AlyxError("oauth_failed", "GitHub returned no user id.", 401)
        primary = next((e for e in emails if isinstance(e, dict) and e.get("primary") and e.get("verified")), None) \
            if isinstance(emails, list) else None
        return Identity(str(user["id"]), primary.get("email") if primary else None, primary is not None,
                        user.get("name") or user.get("login"))

    def _user_for(self, provider: Provider, identity: Identity) -> dict[str, Any]:
        """The linked user; else link by verified email; else create one (registration policy applies)."""
        auth = self.auth
        records = self.records
        links = self.system.oauth_identity
        users = auth.users
        with self.db.connection():
            link = links.get_or_none((links.provider == provider.name) & (links.subject == identity.subject))
            if link is not None:
                linked = dict_row(users.select().where(users.id == link.user_id))
                if linked is not None:
                    return linked
                links.delete().where(links.id == link.id).execute()
            if not identity.email or not identity.email_verified:
                raise AlyxError("oauth_email_unverified", f"{provider.name!r} did not confirm a verified email "
                                                          "address, which Alyx needs to sign you in.", 401)
            email = normalize_email(identity.email)
            user = users.select().where(users.email == email).dicts().get_or_none()
            if user is not None and not user.get("verified"):
                # Someone registered this address with a password but never proved they own it; the provider
                # just did. Take the account over for the owner: drop that password, end its sessions.
                records.update(USERS, user["id"], {}, None, server_values={"verified": True, "password_hash": None},
                               check_rule=False)
                auth.revoke_user_sessions(user["id"], f"email proven via {provider.name}")
            elif user is None:
                user = self._create_user(email, identity)
            with self.db.write():
                links.insert(provider=provider.name, subject=identity.subject, user_id=user["id"],
                             email=email).on_conflict_ignore().execute()
            found: dict[str, Any] = users.select().where(users.id == user["id"]).dicts().get()
            return found

    def _create_user(self, email: str, identity: Identity) -> dict[str, Any]:
        access = self.access
        declared_rule = access.rule(USERS, "create").node is not None
        if not declared_rule and self.config.auth_registration == "closed":
            raise AlyxError("forbidden", "Registration is closed on this server.", 403)
        fields: dict[str, Any] = {"email": email}
        name_field = self.schema.collections[USERS].field("name")
        if identity.name and name_field is not None and name_field.type == "string" and not name_field.hidden:
            fields["name"] = identity.name[: int(name_field.max)] if name_field.max else identity.name
        return self.records.create(USERS, fields, None, server_values={"verified": True},
                                            check_rule=declared_rule)
