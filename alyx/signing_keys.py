"""Signing keys of access tokens: the configured secret(s), rotation, and the development key."""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from alyx.config import Config
from alyx.errors import ConfigError

log = logging.getLogger("alyx.auth")

MIN_SECRET_LENGTH = 32
DEV_KEY_FILE = "auth.key"


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
