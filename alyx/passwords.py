"""Password hashing (argon2id) and its policy, run off the event loop."""
from __future__ import annotations

import secrets
from typing import Any

import argon2

from alyx.background import run_blocking
from alyx.config import Config
from alyx.errors import validation_failed

MAX_PASSWORD_LENGTH = 1024


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
        return run_blocking(self._matches, stored, password)

    def _matches(self, stored: str, password: str) -> bool:
        # A mismatch is an answer, not an error: raised inside gevent's threadpool, it would also be
        # printed with a traceback for every wrong password.
        try:
            return bool(self.hasher.verify(stored, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except argon2.exceptions.InvalidHashError:
            return True
