"""Authentication services: access/refresh tokens, sessions, register/login/logout, principals.

Passwords (alyx/passwords.py), signing keys (alyx/signing_keys.py) and login backoff
(alyx/login_guard.py) are its parts.

No Flask here: the blueprint in alyx/blueprints/auth.py parses requests and calls these services;
the realtime channel turns tokens into principals with `principal_from_token`.

Access tokens are short-lived HS256 JWTs whose header names the signing key (`kid`), so keys rotate
without signing everyone out. Refresh tokens are opaque random strings, stored only as SHA-256,
rotated on every use; presenting a rotated one again revokes its whole session.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database, dict_row, row_count
from alyx.errors import AlyxError, validation_failed
from alyx.login_guard import LoginGuard
from alyx.models import SystemModels
from alyx.passwords import MAX_PASSWORD_LENGTH, Passwords
from alyx.records import ChangeEvent, Records, normalize_email
from alyx.rules import SYSTEM_PRINCIPAL, AccessRules, Principal, RequestInfo
from alyx.signing_keys import KeyRing, load_key_ring

log = logging.getLogger("alyx.auth")

ALGORITHM = "HS256"
ISSUER = "alyx"
MAX_TOKEN_LENGTH = 4096
USERS = "users"


def unauthorized(message: str, code: str = "unauthorized") -> AlyxError:
    """A 401 with the DESIGN.md error shape and an RFC 6750 challenge."""
    return AlyxError(code, message, 401, headers={"WWW-Authenticate": f'Bearer error="{_challenge(code)}"'})


def _challenge(code: str) -> str:
    return "invalid_token" if code in ("invalid_token", "token_expired", "session_revoked") else "invalid_request"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- the service ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Client:
    """Where a request comes from (for sessions and login backoff)."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(eq=False)
class AccountStores:
    """What the account services (AuthService, OAuthService) stand on, in construction order: their dataclass base."""

    config: Config
    db: Database
    records: Records
    access: AccessRules
    system: SystemModels


@dataclass(eq=False)
class AuthService(AccountStores):
    """Register, log in, refresh, log out, change passwords; turn access tokens into principals."""

    def __post_init__(self) -> None:
        self.passwords = Passwords(self.config)
        self.guard = LoginGuard(self.db, self.system.login_attempt, self.config)
        self._keys: KeyRing | None = None
        self._session_cache: dict[str, tuple[Principal, float]] = {}
        self._token_cache: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()

    # -- keys -------------------------------------------------------------------------------------
    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            self._keys = load_key_ring(self.config)
        return self._keys

    @property
    def users(self) -> Any:
        """The users model: built from schema.yaml, so its columns are known at run time only."""
        return self.records.collection(USERS).model

    # -- tokens -----------------------------------------------------------------------------------
    def access_token(self, user: Mapping[str, Any], session_id: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user["id"], "sid": session_id, "typ": "access", "iat": now,
                  "exp": now + self.config.auth_access_token_ttl, "email": user.get("email"),
                  "role": user.get("role") or "user", "verified": bool(user.get("verified"))}
        return jwt.encode(claims, self.keys.signing_key, algorithm=ALGORITHM, headers={"kid": self.keys.signing_kid})

    def decode(self, token: Any) -> dict[str, Any]:
        """Verify an access token: our key (by kid), HS256 only, not expired, issued by us, of type access."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise unauthorized("The access token is missing or malformed.", "invalid_token")
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self.keys.keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise unauthorized("The access token was not signed by a known key.", "invalid_token")
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "sid", "iss"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("The access token has expired; refresh it.", "token_expired") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"The access token is invalid ({exc}).", "invalid_token") from None
        if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str) \
                or not isinstance(claims.get("sid"), str):
            raise unauthorized("The token is not an access token.", "invalid_token")
        return claims

    def authenticate(self, token: Any, max_age: float | None = None) -> tuple[Principal, str]:
        """Access token → (Principal, session id); 401 for a bad or expired token or a revoked session.

        The session (and the user's current role) is re-read from the database at most every
        auth.session_check_seconds per process (or ``max_age`` seconds, if sooner), so logout and role
        changes apply within seconds.
        """
        claims = self._verified_claims(token)
        sid = claims["sid"]
        now = time.monotonic()
        fresh = self.config.auth_session_check_seconds if max_age is None else \
            min(self.config.auth_session_check_seconds, max_age)
        cached = self._session_cache.get(sid)
        if cached is not None and now - cached[1] < fresh and cached[0].id == claims["sub"]:
            return cached[0], sid
        principal = self._load_principal(sid, claims["sub"])
        if self.config.auth_session_check_seconds > 0:
            with self._cache_lock:
                if len(self._session_cache) > 50_000:
                    self._session_cache.clear()
                self._session_cache[sid] = (principal, now)
        return principal, sid

    def _verified_claims(self, token: Any) -> dict[str, Any]:
        """`decode`, remembered per exact token string until it expires (a client sends the same token
        on every request; the HMAC check and JSON parsing are the cost of a signed-in request)."""
        hit = self._token_cache.get(token) if isinstance(token, str) else None
        if hit is not None and hit["exp"] > time.time():
            return hit
        claims = self.decode(token)
        with self._cache_lock:
            if len(self._token_cache) > 50_000:
                self._token_cache.clear()
            self._token_cache[token] = claims
        return claims

    def principal_from_token(self, token: Any) -> Principal:
        return self.authenticate(token)[0]

    def _load_principal(self, sid: str, user_id: str) -> Principal:
        session_model = self.system.session
        with self.db.connection():
            session = dict_row(session_model.select(session_model.user_id, session_model.revoked_at).where(
                session_model.id == sid))
            user = None
            if session is not None and session["revoked_at"] is None and session["user_id"] == user_id:
                users = self.users
                user = users.select(users.id, users.email, users.role, users.verified).where(
                    users.id == user_id).dicts().get_or_none()
        if user is None:
            raise unauthorized("The session has ended (logged out, revoked or the user was deleted).",
                               "session_revoked")
        return principal_of(user)

    def user_changed(self, event: ChangeEvent) -> None:
        """The journal hook on every record write (inside its transaction): a deleted user's sessions end
        with the deletion, and this worker forgets what it cached of a changed user at once."""
        if event.collection != USERS:
            return
        user_id = event.record["id"]
        if event.action == "delete":
            session_model = self.system.session
            session_model.update(revoked_at=utcnow(), revoked_reason="user deleted").where(
                (session_model.user_id == user_id) & session_model.revoked_at.is_null()).execute()
        if event.action != "create":
            with self._cache_lock:
                for sid in [sid for sid, (p, _) in self._session_cache.items() if p.id == user_id]:
                    self._session_cache.pop(sid, None)

    def _forget_sessions(self, session_ids: list[str] | None = None) -> None:
        with self._cache_lock:
            if session_ids is None:
                self._session_cache.clear()
            for sid in session_ids or ():
                self._session_cache.pop(sid, None)

    # -- sessions ---------------------------------------------------------------------------------
    def start_session(self, user: Mapping[str, Any], method: str, client: Client) -> dict[str, Any]:
        """A new session for ``user`` and its first token pair, in the DESIGN.md token shape."""
        sid = secrets.token_hex(16)
        refresh = secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.connection(), self.db.write():
            self.system.session.insert(id=sid, user_id=user["id"], method=method, created_at=now, last_used_at=now,
                                       ip=client.ip, user_agent=(client.user_agent or "")[:300]).execute()
            self._insert_refresh(sid, refresh, now)
        return self.token_response(user, sid, refresh)

    def _insert_refresh(self, sid: str, refresh: str, now: dt.datetime) -> None:
        self.system.refresh_token.insert(
            token_hash=sha256_hex(refresh), session_id=sid, created_at=now,
            expires_at=now + dt.timedelta(seconds=self.config.auth_refresh_token_ttl)).execute()

    def token_response(self, user: Mapping[str, Any], sid: str, refresh: str) -> dict[str, Any]:
        public = self.records.collection(USERS).serialize(user)
        return {"access_token": self.access_token(user, sid), "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": self.config.auth_access_token_ttl, "user": public}

    def refresh(self, refresh_token: Any) -> dict[str, Any]:
        """Rotate a refresh token. A token used before revokes its session (it was stolen or replayed)."""
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 200:
            raise AlyxError("bad_request", "Send {\"refresh_token\": \"...\"}.", 400,
                            {"refresh_token": ["A refresh token is required."]})
        rt_model, session_model = self.system.refresh_token, self.system.session
        token_hash = sha256_hex(refresh_token)
        now = utcnow()
        new_refresh = secrets.token_urlsafe(32)
        problem: AlyxError | None = None
        user = None
        with self.db.connection():
            with self.db.write():
                row = rt_model.get_or_none(rt_model.token_hash == token_hash)
                session = session_model.get_or_none(session_model.id == row.session_id) if row else None
                if row is None or session is None:
                    problem = unauthorized("The refresh token is not valid.", "invalid_token")
                elif session.revoked_at is not None:
                    problem = unauthorized("The session has ended; log in again.", "session_revoked")
                elif row.used_at is not None or rt_model.update(used_at=now).where(
                        (rt_model.token_hash == token_hash) & rt_model.used_at.is_null()).execute() != 1:
                    self._revoke(session.id, "refresh token reuse", now)
                    log.warning("auth: rotated refresh token reused; session %s of user %s revoked", session.id,
                                session.user_id)
                    problem = unauthorized("This refresh token was already used; the session has been revoked.",
                                           "refresh_token_reused")
                elif row.expires_at < now:
                    problem = unauthorized("The refresh token has expired; log in again.", "token_expired")
                else:
                    user = self._user_row(session.user_id)
                    if user is None:
                        self._revoke(session.id, "user deleted", now)
                        problem = unauthorized("The user no longer exists.", "session_revoked")
                    else:
                        self._insert_refresh(session.id, new_refresh, now)
                        if secrets.randbelow(100) == 0:  # expired tokens prove nothing any more
                            rt_model.delete().where(rt_model.expires_at < now).execute()
                        session_model.update(last_used_at=now).where(session_model.id == session.id).execute()
        if problem is not None:
            raise problem
        assert user is not None and session is not None  # no problem: both were found
        return self.token_response(user, session.id, new_refresh)

    def _revoke(self, sid: str, reason: str, now: dt.datetime | None = None) -> None:
        session_model = self.system.session
        session_model.update(revoked_at=now or utcnow(), revoked_reason=reason).where(
            (session_model.id == sid) & session_model.revoked_at.is_null()).execute()
        self._forget_sessions([sid])

    def revoke_user_sessions(self, user_id: str, reason: str, keep: str | None = None) -> int:
        """End every session of a user (but ``keep``); returns how many were ended."""
        session_model = self.system.session
        with self.db.connection(), self.db.write():
            query = session_model.update(revoked_at=utcnow(), revoked_reason=reason).where(
                (session_model.user_id == user_id) & session_model.revoked_at.is_null())
            if keep:
                query = query.where(session_model.id != keep)
            count = row_count(query)
        self._forget_sessions()
        return count

    def logout(self, refresh_token: Any = None, session_id: str | None = None) -> None:
        """Revoke the session of a refresh token, or of the access token's session."""
        sid = session_id
        if isinstance(refresh_token, str) and refresh_token:
            rt_model = self.system.refresh_token
            with self.db.connection():
                row = rt_model.get_or_none(rt_model.token_hash == sha256_hex(refresh_token[:200]))
            if row is None:
                raise unauthorized("The refresh token is not valid.", "invalid_token")
            sid = row.session_id
        if sid is None:
            raise unauthorized("Send a refresh token or an Authorization: Bearer access token to log out.")
        with self.db.connection(), self.db.write():
            self._revoke(sid, "logout")

    # -- users ------------------------------------------------------------------------------------
    def _user_row(self, user_id: str) -> dict[str, Any] | None:
        return dict_row(self.users.select().where(self.users.id == user_id))

    def user_by_id(self, user_id: str) -> dict[str, Any] | None:
        with self.db.connection():
            return self._user_row(user_id)

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        users = self.users
        with self.db.connection():
            return dict_row(users.select().where(users.email == normalize_email(email)))

    def register(self, body: Any, client: Client, request: RequestInfo | None = None) -> dict[str, Any]:
        """Create a user through the records service (users' create rule, if declared, applies) and sign in."""
        if not isinstance(body, dict):
            raise AlyxError("bad_request", "The request body must be a JSON object.", 400)
        fields = dict(body)
        password = self.passwords.check_policy(fields.pop("password", None))
        confirm = fields.pop("passwordConfirm", None)
        if confirm is not None and confirm != password:
            raise validation_failed({"passwordConfirm": ["Does not match the password."]})
        if isinstance(fields.get("email"), str):
            fields["email"] = normalize_email(fields["email"])
        declared_rule = self.access.rule(USERS, "create").node is not None
        if not declared_rule and self.config.auth_registration == "closed":
            raise AlyxError("forbidden", "Registration is closed on this server.", 403)
        self.records.validate(USERS, fields)  # cheap checks before the expensive hash
        if "role" in fields or "verified" in fields:
            raise AlyxError("forbidden", "role and verified cannot be chosen at registration.", 403,
                            {k: ["Only admins can set this field."] for k in ("role", "verified") if k in fields})
        with self.db.connection():
            self.guard.registration(client.ip)
        password_hash = self.passwords.hash(password)
        with self.db.connection():
            created = self.records.create(USERS, fields, None, request,
                                          server_values={"password_hash": password_hash}, check_rule=declared_rule)
            user = self._user_row(created["id"])
        assert user is not None  # just created, in this connection
        return self.start_session(user, "password", client)

    def login(self, body: Any, client: Client) -> dict[str, Any]:
        """Email + password → tokens; 401 on a wrong pair, 429 while the account or IP is locked out."""
        if not isinstance(body, dict):
            raise AlyxError("bad_request", "The request body must be a JSON object.", 400)
        email, password = body.get("email"), body.get("password")
        missing = {k: ["Required."] for k, v in (("email", email), ("password", password))
                   if not isinstance(v, str) or not v}
        if missing:
            raise validation_failed(missing, "Email and password are required.")
        assert isinstance(email, str) and isinstance(password, str)  # checked above
        email = normalize_email(email)
        keys = self.guard.keys(email, client.ip)
        with self.db.connection():
            self.guard.check(keys)
            user = self.users.select().where(self.users.email == email).dicts().get_or_none()
        ok = self.passwords.verify(user.get("password_hash") if user else None, password[:MAX_PASSWORD_LENGTH])
        with self.db.connection():
            if not ok:
                self.guard.failed(keys)
                raise unauthorized("Invalid email or password.", "invalid_credentials")
            self.guard.succeeded(keys)
            assert user is not None  # a password verified against a stored hash
            if self.passwords.needs_rehash(user["password_hash"]):
                self.set_password(user["id"], password)
        return self.start_session(user, "password", client)

    def set_password(self, user_id: str, password: str, keep_session: str | None = None,
                     revoke: bool = False, writer: Principal | None = None) -> None:
        """Store a new hash through the records service; with ``revoke``, end the user's other sessions.

        ``writer``: who asks (the signed-in user changing their password; None: an anonymous request)."""
        password_hash = self.passwords.hash(self.passwords.check_policy(password))
        with self.db.connection():
            self.records.update(USERS, user_id, {}, writer, server_values={"password_hash": password_hash},
                                check_rule=False)
        if revoke:
            self.revoke_user_sessions(user_id, "password changed", keep=keep_session)

    def change_password(self, principal: Principal, session_id: str, body: Any) -> None:
        """The signed-in user changes their password (old one required if set); other sessions end."""
        if not isinstance(body, dict):
            raise AlyxError("bad_request", "The request body must be a JSON object.", 400)
        new = self.passwords.check_policy(body.get("password"))
        with self.db.connection():
            user = self._user_row(principal.id)
        if user is None:
            raise unauthorized("The user no longer exists.", "session_revoked")
        if user.get("password_hash"):
            old = body.get("old_password")
            if not isinstance(old, str) or not self.passwords.verify(user["password_hash"], old[:MAX_PASSWORD_LENGTH]):
                raise AlyxError("forbidden", "The current password is wrong.", 403,
                                {"old_password": ["Does not match the current password."]})
        self.set_password(principal.id, new, keep_session=session_id, revoke=True, writer=principal)

    def me(self, principal: Principal) -> dict[str, Any]:
        try:
            with self.db.connection():
                return self.records.view_unchecked(USERS, principal.id)
        except AlyxError as exc:
            if exc.status == 404:
                raise unauthorized("The user no longer exists.", "session_revoked") from None
            raise

    def create_admin(self, email: str, password: str, promote: bool = False,
                     fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `alyx admin create` command: a verified user with role admin (and `fields`, the users
        collection's own fields, for a new user)."""
        email = normalize_email(email)
        self.passwords.check_policy(password)
        password_hash = self.passwords.hash(password)
        admin_values = {"password_hash": password_hash, "role": "admin", "verified": True}
        existing = self.user_by_email(email)
        with self.db.connection():
            if existing is not None:
                if not promote:
                    raise AlyxError("conflict", f"A user {email} exists already; add --promote to make them an "
                                                "admin and set this password.", 409)
                user = self.records.update(USERS, existing["id"], {}, SYSTEM_PRINCIPAL, server_values=admin_values,
                                           check_rule=False)
                self.revoke_user_sessions(existing["id"], "promoted to admin")
                return user
            # The operator's own write (the CLI): its database hooks run as the server.
            return self.records.create(USERS, {**(fields or {}), "email": email}, SYSTEM_PRINCIPAL,
                                       server_values=admin_values, check_rule=False)


def principal_of(user: Mapping[str, Any]) -> Principal:
    return Principal(user["id"], user.get("email") or "", user.get("role") or "user", bool(user.get("verified")))


class HasAuth(Protocol):
    """Anything holding the auth service (the app's Services)."""

    @property
    def auth(self) -> AuthService: ...


def principal_from_token(services: HasAuth, token: str | None) -> Principal | None:
    """An access token → the Principal it stands for (None for no token); AlyxError 401 when it is bad.

    For callers outside Flask requests, such as the realtime WebSocket channel.
    """
    if token is None or token == "":
        return None
    return services.auth.principal_from_token(token)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
