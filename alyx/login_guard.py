"""Login backoff and the registration limit: failed logins counted per (account, source) and per source
in the database, lockouts (429); registrations counted per source and window."""
from __future__ import annotations

import datetime as dt
import math
import secrets

from alyx.clock import utcnow
from alyx.config import Config
from alyx.db import Database
from alyx.errors import AlyxError
from alyx.models import LoginAttempt


class LoginGuard:
    """Brute-force protection: failed logins counted per (account, source IP) and per source IP in the
    database (so every worker sees them); past a threshold each further failure doubles a lockout (429).
    An account is never locked for everyone: failures from one address do not lock out another one."""

    def __init__(self, db: Database, model: type[LoginAttempt], config: Config) -> None:
        self.db = db
        self.model = model
        self.limits = {"account": config.auth_login_max_failures_account, "ip": config.auth_login_max_failures_ip}
        self.max_lock = max(1, config.auth_login_lockout_max_seconds)
        self.register_limit = config.auth_registration_rate_limit
        self.register_window = max(1, config.auth_registration_rate_window)

    def keys(self, email: str, ip: str | None) -> list[tuple[str, str]]:
        found = [("account", f"account:{email[:245]}|{(ip or '-')[:45]}")]
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

    def registration(self, ip: str | None) -> None:
        """Count one registration from ``ip``: 429 with Retry-After past auth.registration_rate_limit in
        the current window (a fixed window per address, kept in the login-attempts table)."""
        if not self.register_limit or not ip:
            return
        key, now = f"register:{ip[:45]}", utcnow()
        with self.db.write():
            row = self.model.get_or_none(self.model.key == key)
            created = row is None
            if row is None or row.locked_until is None or row.locked_until <= now:
                row = row or self.model(key=key)
                row.failures, row.last_failure_at = 0, now  # a new window starts now
                row.locked_until = now + dt.timedelta(seconds=self.register_window)  # kept until it ends
            if row.failures >= self.register_limit:
                seconds = max(1, math.ceil((row.locked_until - now).total_seconds()))
                raise AlyxError("rate_limited", f"Too many registrations from this address; try again in "
                                f"{seconds} seconds.", 429, {"retry_after": seconds}, {"Retry-After": str(seconds)})
            row.failures += 1
            row.save(force_insert=created)

    def succeeded(self, keys: list[tuple[str, str]]) -> None:
        """A good password clears the account's streak (not the IP's: one own account must not reset it)."""
        account = [k for kind, k in keys if kind == "account"]
        with self.db.write():
            self.model.delete().where(self.model.key.in_(account)).execute()
