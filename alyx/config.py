"""alyx.yaml plus ALYX_* environment variables, turned into one typed, validated Config."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alyx.errors import ConfigError
from alyx.yamlfile import load_yaml

CONFIG_FILE = "alyx.yaml"
SANDBOX_TIERS = ("auto", "docker", "bwrap", "process")
ENVIRONMENTS = ("production", "development")


def _setting(default: Any, key: str, kind: Any, choices: tuple[str, ...] | None = None, env: tuple[str, ...] = (),
             maximum: int | None = None) -> Any:
    return field(default=default, metadata={"key": key, "kind": kind, "choices": choices, "env": env,
                                            "maximum": maximum})


@dataclass(frozen=True)
class Config:
    """Every setting Alyx reads. Key ``a.b`` in alyx.yaml is overridden by ``ALYX_A_B``."""

    project_dir: Path = Path(".")
    server_host: str = _setting("127.0.0.1", "server.host", str)
    server_port: int = _setting(8080, "server.port", int, maximum=65535)
    server_max_body_bytes: int = _setting(1_048_576, "server.max_body_bytes", int)
    server_workers: int = _setting(2, "server.workers", int)
    database_url: str | None = _setting(None, "database.url", str)
    database_path: str = _setting("data/alyx.db", "database.path", str)
    database_busy_timeout_ms: int = _setting(2000, "database.busy_timeout_ms", int)
    database_pool_size: int = _setting(32, "database.pool_size", int)
    api_default_per_page: int = _setting(30, "api.default_per_page", int)
    api_max_per_page: int = _setting(500, "api.max_per_page", int)
    api_max_batch: int = _setting(100, "api.max_batch", int)  # operations per POST /api/batch
    server_environment: str = _setting("production", "server.environment", str, choices=ENVIRONMENTS)
    server_proxy_count: int = _setting(0, "server.proxy_count", int)
    # addresses/networks of reverse proxies whose X-Forwarded-For/-Proto are believed (alyx/proxies.py)
    server_trusted_proxies: str | None = _setting(None, "server.trusted_proxies", str)
    api_rate_limit: int = _setting(0, "api.rate_limit", int)
    api_rate_limit_window: int = _setting(60, "api.rate_limit_window", int)
    auth_secret: str | None = _setting(None, "auth.secret", str, env=("JWT_SECRET",))
    auth_previous_secrets: str | None = _setting(None, "auth.previous_secrets", str)
    auth_key_file: str | None = _setting(None, "auth.key_file", str)
    auth_access_token_ttl: int = _setting(900, "auth.access_token_ttl", int)
    auth_refresh_token_ttl: int = _setting(30 * 86400, "auth.refresh_token_ttl", int)
    auth_session_check_seconds: int = _setting(5, "auth.session_check_seconds", int)
    auth_registration: str = _setting("open", "auth.registration", str, choices=("open", "closed"))
    auth_password_min_length: int = _setting(8, "auth.password_min_length", int)
    # argon2id at OWASP's recommended 46 MiB, t=1, p=1 (hashes made with other settings are upgraded
    # at the next login)
    auth_argon2_time_cost: int = _setting(1, "auth.argon2_time_cost", int)
    auth_argon2_memory_kib: int = _setting(47104, "auth.argon2_memory_kib", int)
    auth_argon2_parallelism: int = _setting(1, "auth.argon2_parallelism", int)
    auth_login_max_failures_account: int = _setting(5, "auth.login_max_failures_account", int)
    auth_login_max_failures_ip: int = _setting(50, "auth.login_max_failures_ip", int)
    auth_login_lockout_max_seconds: int = _setting(900, "auth.login_lockout_max_seconds", int)
    # registrations per client IP and window (database-backed, shared by workers); 0 turns it off
    auth_registration_rate_limit: int = _setting(20, "auth.registration_rate_limit", int)
    auth_registration_rate_window: int = _setting(3600, "auth.registration_rate_window", int)
    auth_oauth: dict[str, Any] | None = _setting(None, "auth.oauth", dict)
    auth_verification_ttl: int = _setting(86400, "auth.verification_ttl", int)  # seconds a mailed token is valid
    auth_password_reset_ttl: int = _setting(1800, "auth.password_reset_ttl", int)
    auth_email_change_ttl: int = _setting(3600, "auth.email_change_ttl", int)
    mail_from: str | None = _setting(None, "mail.from", str)
    mail_smtp_host: str | None = _setting(None, "mail.smtp.host", str)
    mail_smtp_port: int = _setting(587, "mail.smtp.port", int, maximum=65535)
    mail_smtp_username: str | None = _setting(None, "mail.smtp.username", str)
    mail_smtp_password: str | None = _setting(None, "mail.smtp.password", str)
    mail_smtp_tls: str = _setting("starttls", "mail.smtp.tls", str, choices=("starttls", "ssl", "none"))
    mail_smtp_timeout_seconds: int = _setting(10, "mail.smtp.timeout_seconds", int)
    mail_link_base: str | None = _setting(None, "mail.link_base", str)  # your app's page that takes ?token=
    mail_cooldown_seconds: int = _setting(60, "mail.cooldown_seconds", int)  # per address and kind
    functions_sandbox: str = _setting("auto", "functions.sandbox", str, choices=SANDBOX_TIERS)
    functions_warm_pool: int = _setting(1, "functions.warm_pool", int)  # started generic sandboxes per runtime
    functions_idle_ttl: int = _setting(300, "functions.idle_ttl", int)  # seconds an idle sandbox is kept
    functions_memory_budget_mb: int = _setting(2048, "functions.memory_budget_mb", int)  # sum of sandbox limits
    functions_max_response_bytes: int = _setting(10_485_760, "functions.max_response_bytes", int)  # else 502
    realtime_broker: str | None = _setting(None, "realtime.broker", str)
    events_runner: str = _setting("on", "events.runner", str, choices=("on", "off"))  # off: queue, never run jobs
    events_poll_ms: int = _setting(500, "events.poll_ms", int)  # how often idle workers look for due jobs
    events_concurrency: int = _setting(4, "events.concurrency", int)  # jobs run at once per worker process
    events_retries: int = _setting(3, "events.retries", int)  # default for manifests without `retries`
    events_backoff_base_ms: int = _setting(1000, "events.backoff_base_ms", int)
    events_backoff_max_seconds: int = _setting(3600, "events.backoff_max_seconds", int)
    events_lock_seconds: int = _setting(60, "events.lock_seconds", int)  # a silent worker's job is retried after
    events_sync_timeout_seconds: int = _setting(5, "events.sync_timeout_seconds", int)
    events_job_retention_seconds: int = _setting(7 * 86400, "events.job_retention_seconds", int)
    schedules_catch_up: str = _setting("once", "schedules.catch_up", str, choices=("once", "all", "none"))
    schedules_lease_seconds: int = _setting(15, "schedules.lease_seconds", int)
    webhooks: list[Any] | None = _setting(None, "webhooks", list)  # outgoing webhooks (alyx/events.py)
    realtime_max_connections: int = _setting(10000, "realtime.max_connections", int)  # per worker process
    realtime_max_subscriptions: int = _setting(100, "realtime.max_subscriptions", int)  # per connection
    realtime_max_frame_bytes: int = _setting(65536, "realtime.max_frame_bytes", int)  # client → server
    realtime_send_queue_max: int = _setting(1000, "realtime.send_queue_max", int)  # frames; then disconnected
    realtime_heartbeat_seconds: int = _setting(25, "realtime.heartbeat_seconds", int)
    realtime_write_timeout_seconds: int = _setting(10, "realtime.write_timeout_seconds", int)  # then cut
    realtime_feed_retention_seconds: int = _setting(3600, "realtime.feed_retention_seconds", int)
    realtime_feed_max_rows: int = _setting(100_000, "realtime.feed_max_rows", int)
    realtime_poll_interval_ms: int = _setting(50, "realtime.poll_interval_ms", int)
    realtime_coalesce_ms: int = _setting(0, "realtime.coalesce_ms", int)
    storage_backend: str = _setting("auto", "storage.backend", str, choices=("auto", "local", "s3"))
    storage_path: str = _setting("data/storage", "storage.path", str)  # local blobs (relative: the project)
    storage_s3: dict[str, Any] | None = _setting(None, "storage.s3", dict)  # endpoint, bucket, region, ...
    storage_token_ttl: int = _setting(120, "storage.token_ttl", int)  # seconds a protected-file token lasts
    storage_sweep_grace: int = _setting(3600, "storage.sweep_grace", int)  # orphan blobs younger are kept
    # ALYX_ADMIN_UI_DEV=http://localhost:5173: /_admin/ is proxied to that dev server (alyx/blueprints/admin.py)
    admin_ui_dev: str | None = _setting(None, "admin.ui_dev", str)

    @property
    def schema_path(self) -> Path:
        return self.project_dir / "schema.yaml"

    @property
    def functions_dir(self) -> Path:
        return self.project_dir / "functions"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file, relative paths taken from the project directory."""
        path = Path(self.database_path)
        return path if path.is_absolute() else self.project_dir / path

    @property
    def database_display(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"


def _settings() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Config) if "key" in f.metadata]


def _integer(value: Any) -> int | None:
    """An int from YAML or the environment ("8090"); None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _coerce(value: Any, f: dataclasses.Field[Any], where: str) -> Any:
    kind = f.metadata["kind"]
    key = f.metadata["key"]
    if value is None:
        return None
    if kind is int:
        number = _integer(value)
        if number is None:
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        value = number
        if value < 0:
            raise ConfigError(f"{where}: {key}: expected a non-negative integer, got {value}")
        if f.metadata.get("maximum") is not None and value > f.metadata["maximum"]:
            raise ConfigError(f"{where}: {key}: expected at most {f.metadata['maximum']}, got {value}")
    elif kind in (dict, list):
        json_name, yaml_name = ("a JSON object", "a mapping") if kind is dict else ("a JSON array", "a list")
        if isinstance(value, str):  # from the environment: JSON
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{where}: {key}: expected {json_name}") from None
        if not isinstance(value, kind):
            raise ConfigError(f"{where}: {key}: expected {yaml_name}, got {value!r}")
    elif kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
        value = str(value)
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise ConfigError(f"{where}: {key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _flatten(data: Mapping[str, Any], lines: dict[str, int], prefix: str = "") -> dict[str, Any]:
    """{"server": {"port": 1}} → {"server.port": 1}; ``lines`` gets the line of every key."""
    flat: dict[str, Any] = {}
    mappings = {f.metadata["key"] for f in _settings() if f.metadata["kind"] is dict}
    for k, v in data.items():
        key = f"{prefix}{k}"
        lines[key] = getattr(data, "key_lines", {}).get(k, 0)
        if isinstance(v, dict) and key not in mappings:
            flat.update(_flatten(v, lines, key + "."))
        elif v is None and _is_section(key):
            continue  # a section whose keys are all commented out
        else:
            flat[key] = v
    return flat


def _is_section(key: str) -> bool:
    return any(f.metadata["key"].startswith(key + ".") for f in _settings())


def load_config(project_dir: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read alyx.yaml (optional) from the project directory, then apply environment overrides.

    Any unknown key or wrong type raises ConfigError naming the file (or variable) and the key.
    """
    env = os.environ if env is None else env
    project = Path(project_dir or env.get("ALYX_PROJECT_DIR") or ".").resolve()
    if not project.is_dir():
        raise ConfigError(f"ALYX_PROJECT_DIR: {project} is not a directory")
    path = project / CONFIG_FILE
    from_file: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path.exists():
        loaded = load_yaml(path.read_text(encoding="utf-8"), str(path))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        from_file = _flatten(loaded, lines)
    by_key = {f.metadata["key"]: f for f in _settings()}

    def where(key: str) -> str:
        return f"{path}:{lines[key]}" if lines.get(key) else str(path)

    for key in sorted(set(from_file) - set(by_key), key=lambda k: lines.get(k, 0)):
        if _is_section(key):
            raise ConfigError(f"{where(key)}: {key}: expected a mapping of settings, got {from_file[key]!r}")
        raise ConfigError(f"{where(key)}: unknown key {key!r}; known keys: {', '.join(sorted(by_key))}")
    values: dict[str, Any] = {"project_dir": project}
    for f in _settings():
        key = f.metadata["key"]
        if key in from_file:
            values[f.name] = _coerce(from_file[key], f, where(key))
        for var in ("ALYX_" + f.name.upper(), *f.metadata["env"]):
            if env.get(var):
                values[f.name] = _coerce(env[var], f, f"environment variable {var}")
                break
    return Config(**values)


MASK = "********"
SECRET_WORDS = ("secret", "password", "token", "private")


def masked_value(key: str, value: Any) -> Any:
    """A setting's value with every secret in it replaced by MASK (keys naming a secret; URL passwords)."""
    if value is None:
        return None
    if any(word in key.lower() for word in SECRET_WORDS):
        return MASK
    if isinstance(value, Mapping):
        return {k: masked_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_value(key, v) for v in value]
    if isinstance(value, str) and "://" in value:
        return _masked_url(value)
    return value


def _masked_url(url: str) -> str:
    """``url`` with its password masked: the userinfo's (up to the authority's last ``@``, as drivers read
    it: a password may hold an ``@``) and query parameters naming a secret (``?password=``, which redis
    and libpq read too)."""
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        authority = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    path, question, query = tail.partition("?")
    if question:
        query = "&".join(f"{pair.partition('=')[0]}={MASK}" if any(word in pair.partition("=")[0].lower()
                                                                  for word in SECRET_WORDS) else pair
                         for pair in query.split("&"))
    return f"{scheme}://{authority}{path}{question}{query}"


def masked_settings(config: Config) -> list[dict[str, Any]]:
    """The effective settings (key, value, default, environment variable), secrets masked: what an admin may see."""
    return [{"key": f.metadata["key"], "value": masked_value(f.metadata["key"], getattr(config, f.name)),
             "default": masked_value(f.metadata["key"], f.default), "env": "ALYX_" + f.name.upper()}
            for f in _settings()]
