"""Account flows users expect: email verification, password reset and email change, by mailed tokens.

Each token is 32 random bytes (url-safe) stored only as SHA-256 in `_alyx_account_tokens`, valid
for its kind's TTL (auth.verification_ttl, auth.password_reset_ttl, auth.email_change_ttl), used
at most once (a conditional UPDATE, so two confirmations cannot both win), and replaced by a newer
request of the same kind. The request answers never say whether an address has an account.
"""
from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from alyx.auth import USERS, AuthService, sha256_hex
from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database, dict_row
from alyx.errors import AlyxError, bad_request, validation_failed
from alyx.mail import Mailer
from alyx.models import SystemModels
from alyx.records import normalize_email
from alyx.rules import Principal

VERIFICATION, PASSWORD_RESET, EMAIL_CHANGE = "verification", "password_reset", "email_change"
MAX_EMAIL = 254


def invalid_token() -> AlyxError:
    return AlyxError("invalid_token", "The link is invalid, expired or was already used; ask for a new one.", 400)


@dataclass(eq=False)
class AccountFlows:
    """request-* mail a token (or, for unknown addresses, silently do nothing); confirm-* consume it."""

    config: Config
    db: Database
    system: SystemModels
    auth: AuthService
    mailer: Mailer

    def ttl(self, kind: str) -> int:
        return {VERIFICATION: self.config.auth_verification_ttl, PASSWORD_RESET: self.config.auth_password_reset_ttl,
                EMAIL_CHANGE: self.config.auth_email_change_ttl}[kind]

    # -- requests ---------------------------------------------------------------------------------
    def request_verification(self, body: Any) -> None:
        user = self.auth.user_by_email(email_of(body, "email"))
        if user is not None and not user.get("verified"):
            self._issue(VERIFICATION, user, user["email"])

    def request_password_reset(self, body: Any) -> None:
        user = self.auth.user_by_email(email_of(body, "email"))
        if user is not None:
            self._issue(PASSWORD_RESET, user, user["email"])

    def request_email_change(self, principal: Principal, body: Any) -> None:
        """Mail the new address (a taken address gets nothing: the answer is the same either way)."""
        new_email = email_of(body, "new_email")
        self.auth.records.validate(USERS, {"email": new_email}, partial=True)  # 422 for a malformed address
        user = self.auth.user_by_id(principal.id)
        if user is None:
            raise AlyxError("session_revoked", "The user no longer exists.", 401)
        if new_email != user["email"] and self.auth.user_by_email(new_email) is None:
            self._issue(EMAIL_CHANGE, user, new_email, new_email=new_email)

    def _issue(self, kind: str, user: Mapping[str, Any], to: str, new_email: str | None = None) -> None:
        """A new token of ``kind`` for ``user`` (older unused ones end), mailed to ``to``; at most one mail per
        user and kind every mail.cooldown_seconds, so nobody can flood an inbox through these endpoints."""
        model = self.system.account_token
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.connection(), self.db.write():
            mine = (model.user_id == user["id"]) & (model.kind == kind) & model.used_at.is_null()
            cooldown = now - dt.timedelta(seconds=self.config.mail_cooldown_seconds)
            if self.config.mail_cooldown_seconds and model.select().where(
                    mine & (model.created_at > cooldown)).exists():
                return
            model.delete().where(mine | (model.expires_at < now)).execute()
            model.insert(token_hash=sha256_hex(token), kind=kind, user_id=user["id"], new_email=new_email,
                         created_at=now, expires_at=now + dt.timedelta(seconds=self.ttl(kind))).execute()
        values = {"email": to, "token": token, "minutes": str(max(1, self.ttl(kind) // 60)),
                  "link": self._link(kind, token)}
        self.mailer.send_later(self.mailer.render(kind, to, values))

    def _link(self, kind: str, token: str) -> str:
        query = urlencode({"type": kind, "token": token})
        base = self.config.mail_link_base
        return f"{base}{'&' if base and '?' in base else '?'}{query}" if base else query

    # -- confirmations ----------------------------------------------------------------------------
    def confirm_verification(self, body: Any) -> None:
        row = self._consume(VERIFICATION, body)
        with self.db.connection():
            self.auth.records.update(USERS, row["user_id"], {}, None, server_values={"verified": True},
                                     check_rule=False)

    def confirm_password_reset(self, body: Any) -> None:
        """Set the new password; every session of the user ends (whoever had them is signed out)."""
        password = self.auth.passwords.check_policy(body.get("password") if isinstance(body, dict) else None)
        row = self._consume(PASSWORD_RESET, body)
        self.auth.set_password(row["user_id"], password, revoke=True)
        with self.db.connection():  # the mail reached the address: it is verified
            self.auth.records.update(USERS, row["user_id"], {}, None, server_values={"verified": True},
                                     check_rule=False)

    def confirm_email_change(self, body: Any) -> None:
        """Move the account to the confirmed address (verified); its sessions end (their tokens name the old one)."""
        row = self._consume(EMAIL_CHANGE, body)
        with self.db.connection():
            self.auth.records.update(USERS, row["user_id"], {"email": row["new_email"]}, None,
                                     server_values={"verified": True}, check_rule=False)
        self.auth.revoke_user_sessions(row["user_id"], "email changed")

    def _consume(self, kind: str, body: Any) -> dict[str, Any]:
        """The token's row, marked used (once: a conditional UPDATE); 400 invalid_token otherwise."""
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise validation_failed({"token": ["The token from the mail is required."]})
        if len(token) > 200:
            raise invalid_token()
        model = self.system.account_token
        token_hash, now = sha256_hex(token), utcnow()
        with self.db.connection(), self.db.write():
            used = model.update(used_at=now).where(
                (model.token_hash == token_hash) & (model.kind == kind) & model.used_at.is_null()
                & (model.expires_at > now)).execute()
            row = dict_row(model.select().where(model.token_hash == token_hash)) if used == 1 else None
        if row is None:
            raise invalid_token()
        return row


def email_of(body: Any, key: str) -> str:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_EMAIL:
        raise validation_failed({key: ["An email address is required."]})
    return normalize_email(value)
