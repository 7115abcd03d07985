"""Authentication services: password hashing, signing keys, access/refresh tokens, sessions, login backoff.

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
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import argon2
import jwt

from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database, dict_row, row_count
from alyx.errors import AlyxError, ConfigError, validation_failed
from alyx.models import LoginAttempt, SystemModels
from alyx.records import Records
from alyx.rules import AccessRules, Principal, RequestInfo

log = logging.getLogger("alyx.auth")

ALGORITHM = "HS256"
ISSUER = "alyx"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 4096
MAX_PASSWORD_LENGTH = 1024
DEV_KEY_FILE = "auth.key"
USERS = "users"
T = TypeVar("T")


def unauthorized(message: str, code: str = "unauthorized") -> AlyxError:
    """A 401 with the DESIGN.md error shape and an RFC 6750 challenge."""
    return AlyxError(code, message, 401, headers={"WWW-Authenticate": f'Bearer error="{_challenge(code)}"'})


def _challenge(code: str) -> str:
    return "invalid_token" if code in ("invalid_token", "token_expired", "session_revoked") else "invalid_request"


_hash_pool: Any = None
_hash_pool_pid = 0


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-heavy work (password hashing) in a gevent threadpool when the process is monkey-patched.

    Under gunicorn's gevent worker a 100 ms argon2 hash would otherwise stall every greenlet; under
    `flask run` (real threads, no patching) the work runs in the calling thread. The pool has one
    thread per core: more concurrent hashes only add memory (tens of MiB each) and contention.
    """
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        return fn(*args)
    global _hash_pool, _hash_pool_pid
    if _hash_pool is None or _hash_pool_pid != os.getpid():  # one pool per worker, made after the fork
        from gevent.threadpool import ThreadPool

        _hash_pool, _hash_pool_pid = ThreadPool(os.cpu_count() or 2), os.getpid()
    result: T = _hash_pool.apply(fn, args)
    return result


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- signing keys --------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRing:
    """The key that signs new access tokens, and every key (current and previous) that verifies them."""

    signing_kid: str
    keys: dict[str, bytes]

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.signing_kid]


def key_id(secret: str) -> str:
    """A public name for a secret (a truncated hash: it says which key, never the key)."""
    return hashlib.sha256(b"alyx-kid:" + secret.encode()).hexdigest()[:16]


def load_key_ring(config: Config) -> KeyRing:
    """The configured keys; a missing, empty or short secret outside development stops start-up.

    Order: auth.secret (ALYX_AUTH_SECRET / JWT_SECRET), then auth.key_file (one secret per line, the
    first signs), then — only with server.environment: development — a key generated once and kept
    in the data directory. auth.previous_secrets (comma-separated) still verify, for rotation.
    """
    if config.auth_secret is not None:
        if not config.auth_secret.strip():
            raise ConfigError("auth.secret (ALYX_AUTH_SECRET / JWT_SECRET) is empty; set a random secret of at "
                              f"least {MIN_SECRET_LENGTH} characters")
        current = [config.auth_secret.strip()]
        source = "auth.secret"
    elif config.auth_key_file:
        path = Path(config.auth_key_file)
        path = path if path.is_absolute() else config.project_dir / path
        try:
            current = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"auth.key_file: cannot read {path}: {exc.strerror}") from None
        if not current:
            raise ConfigError(f"auth.key_file: {path} holds no key")
        source = f"auth.key_file ({path})"
    elif config.server_environment == "development":
        current = [_development_key(config)]
        source = "the development key"
    else:
        raise ConfigError(
            "no auth secret: set ALYX_AUTH_SECRET (or JWT_SECRET) to a random string of at least "
            f"{MIN_SECRET_LENGTH} characters, or auth.key_file in alyx.yaml; only server.environment: "
            "development generates a key by itself")
    previous = [s.strip() for s in (config.auth_previous_secrets or "").split(",") if s.strip()]
    for secret in current + previous:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{source}: auth secrets must be at least {MIN_SECRET_LENGTH} characters long "
                              f"(got {len(secret)})")
    keys = {key_id(s): s.encode() for s in current + previous}
    return KeyRing(key_id(current[0]), keys)


def _development_key(config: Config) -> str:
    """Generate (once, atomically: several workers may race) and read the development key."""
    path = config.project_dir / "data" / DEV_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
    for _ in range(50):  # another worker may have created the file and not yet written it
        text = path.read_text(encoding="utf-8").strip()
        if text:
            break
        time.sleep(0.01)
    log.warning("auth: using the development signing key in %s; set ALYX_AUTH_SECRET in production", path)
    return text.splitlines()[0].strip()


# -- passwords -----------------------------------------------------------------------------------
class Passwords:
    """argon2id hashing (argon2-cffi), always off the event loop."""

    def __init__(self, config: Config) -> None:
        self.hasher = argon2.PasswordHasher(time_cost=config.auth_argon2_time_cost,
                                            memory_cost=config.auth_argon2_memory_kib,
                                            parallelism=config.auth_argon2_parallelism,
                                            type=argon2.Type.ID)
        self.min_length = config.auth_password_min_length
        self._dummy: str | None = None

    def check_policy(self, password: Any, field: str = "password") -> str:
        if not isinstance(password, str) or not password:
            raise validation_failed({field: ["A password is required."]}, "The password is missing.")
        if len(password) < self.min_length:
            raise validation_failed({field: [f"Must be at least {self.min_length} characters."]},
                                    "The password is too short.")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise validation_failed({field: [f"Must be at most {MAX_PASSWORD_LENGTH} characters."]},
                                    "The password is too long.")
        return password

    def hash(self, password: str) -> str:
        return run_blocking(self.hasher.hash, password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches; an account without a hash costs a dummy verify (no timing oracle)."""
        if not stored:
            if self._dummy is None:
                self._dummy = run_blocking(self.hasher.hash, secrets.token_urlsafe(16))
            stored = self._dummy
            password = password + "\x00never"
        try:
            return run_blocking(self.hasher.verify, stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except argon2.exceptions.InvalidHashError:
            return True


# -- login backoff ---------------------------------------------------------------------------------
class LoginGuard:
    """Brute-force protection: failed logins counted per account and per IP in the database
    (so every worker sees them); past a threshold each further failure doubles a lockout (429)."""

    def __init__(self, db: Database, model: type[LoginAttempt], config: Config) -> None:
        self.db = db
        self.model = model
        self.limits = {"account": config.auth_login_max_failures_account, "ip": config.auth_login_max_failures_ip}
        self.max_lock = max(1, config.auth_login_lockout_max_seconds)

    def keys(self, email: str, ip: str | None) -> list[tuple[str, str]]:
        found = [("account", f"account:{email[:254]}")]
        if ip:
            found.append(("ip", f"ip:{ip[:45]}"))
        return found

    def check(self, keys: list[tuple[str, str]]) -> None:
        """429 with Retry-After while any key is locked."""
        now = utcnow()
        rows = self.model.select().where(self.model.key.in_([k for _, k in keys]))
        wait = max([(row.locked_until - now).total_seconds() for row in rows if row.locked_until] or [0])
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise AlyxError("rate_limited", f"Too many failed logins; try again in {seconds} seconds.", 429,
                            {"retry_after": seconds}, {"Retry-After": str(seconds)})

    def failed(self, keys: list[tuple[str, str]]) -> None:
        now = utcnow()
        with self.db.write():
            for kind, key in keys:
                row = self.model.get_or_none(self.model.key == key)
                if row is None:
                    row = self.model(key=key, failures=0)
                    created = True
                else:
                    created = False
                    locked = row.locked_until is not None and row.locked_until > now
                    if not locked and (now - row.last_failure_at).total_seconds() > self.max_lock:
                        row.failures = 0  # an old streak is forgotten
                row.failures += 1
                row.last_failure_at = now
                over = row.failures - self.limits[kind]
                if over >= 0:
                    row.locked_until = now + dt.timedelta(seconds=min(self.max_lock, 2 ** min(over, 20)))
                row.save(force_insert=created)
            if secrets.randbelow(100) == 0:  # now and then, forget streaks nobody is locked by any more
                stale = now - dt.timedelta(seconds=2 * self.max_lock)
                self.model.delete().where((self.model.last_failure_at < stale) & (
                    self.model.locked_until.is_null() | (self.model.locked_until < now))).execute()

    def succeeded(self, keys: list[tuple[str, str]]) -> None:
        """A good password clears the account's streak (not the IP's: one own account must not reset it)."""
        account = [k for kind, k in keys if kind == "account"]
        with self.db.write():
            self.model.delete().where(self.model.key.in_(account)).execute()


# -- the service ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Client:
    """Where a request comes from (for sessions and login backoff)."""

    ip: str | None = None
    user_agent: str | None = None


class AuthService:
    """Register, log in, refresh, log out, change passwords; turn access tokens into principals."""

    def __init__(self, config: Config, db: Database, records: Records, access: AccessRules,
                 system: SystemModels) -> None:
        self.config = config
        self.db = db
        self.records = records
        self.access = access
        self.system = system
        self.passwords = Passwords(config)
        self.guard = LoginGuard(db, system.login_attempt, config)
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

    def authenticate(self, token: Any) -> tuple[Principal, str]:
        """Access token → (Principal, session id); 401 for a bad or expired token or a revoked session.

        The session (and the user's current role) is re-read from the database at most every
        auth.session_check_seconds per process, so logout and role changes apply within seconds.
        """
        claims = self._verified_claims(token)
        sid = claims["sid"]
        now = time.monotonic()
        cached = self._session_cache.get(sid)
        if cached is not None and cached[1] > now and cached[0].id == claims["sub"]:
            return cached[0], sid
        principal = self._load_principal(sid, claims["sub"])
        if self.config.auth_session_check_seconds > 0:
            with self._cache_lock:
                if len(self._session_cache) > 50_000:
                    self._session_cache.clear()
                self._session_cache[sid] = (principal, now + self.config.auth_session_check_seconds)
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
                     revoke: bool = False) -> None:
        """Store a new hash through the records service; with ``revoke``, end the user's other sessions."""
        password_hash = self.passwords.hash(self.passwords.check_policy(password))
        with self.db.connection():
            self.records.update(USERS, user_id, {}, None, server_values={"password_hash": password_hash},
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
        self.set_password(principal.id, new, keep_session=session_id, revoke=True)

    def me(self, principal: Principal) -> dict[str, Any]:
        try:
            with self.db.connection():
                return self.records.view_unchecked(USERS, principal.id)
        except AlyxError as exc:
            if exc.status == 404:
                raise unauthorized("The user no longer exists.", "session_revoked") from None
            raise

    def create_admin(self, email: str, password: str, promote: bool = False) -> dict[str, Any]:
        """The `alyx admin create` command: a verified user with role admin."""
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
                user = self.records.update(USERS, existing["id"], {}, None, server_values=admin_values,
                                           check_rule=False)
                self.revoke_user_sessions(existing["id"], "promoted to admin")
                return user
            return self.records.create(USERS, {"email": email}, None, server_values=admin_values, check_rule=False)


def principal_of(user: Mapping[str, Any]) -> Principal:
    return Principal(user["id"], user.get("email") or "", user.get("role") or "user", bool(user.get("verified")))


def normalize_email(email: str) -> str:
    return email.strip().lower()


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
