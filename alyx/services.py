"""Builds the services of one Alyx instance from a Config — no Flask, so the CLI uses it too.

``build_services`` is the one place services are made: each gets only what it uses, the record
hook points are registered in one ordered list (``record_hooks``), and the returned ``Services``
is complete. Nothing else constructs a service or registers a record hook.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import peewee
import redis

from alyx.account_flows import AccountFlows
from alyx.auth import AuthService
from alyx.batch import Batch
from alyx.config import Config
from alyx.db import Database
from alyx.errors import ConfigError
from alyx.events import Events
from alyx.file_access import FileAccess
from alyx.functions import Functions
from alyx.mail import Mailer
from alyx.migrations import Migrator, Plan, migration_lock
from alyx.models import SystemModels, build_models, build_system_models
from alyx.oauth import OAuthService
from alyx.ratelimit import RedisRateLimiter, SqlRateLimiter
from alyx.realtime import Realtime
from alyx.record_files import RecordFiles
from alyx.records import Records
from alyx.rules import AccessRules
from alyx.sandbox import PoolSettings
from alyx.schema import Schema, load_schema
from alyx.status import ServerStatus
from alyx.storage import Storage, open_storage
from alyx.system_migrations import apply_system_migrations

log = logging.getLogger("alyx")

HookPoint = Literal["guard", "begin", "journal", "listener"]


@dataclass(frozen=True)
class RecordHook:
    """One registration on a hook point of the records service (alyx/records.py).

    ``guard``: before a write, outside its transaction (``applies`` says for which writes);
    ``begin``: first inside the write transaction, before any row is written (locks taken in one order);
    ``journal``: inside the write transaction, before commit; ``listener``: after commit.
    """

    point: HookPoint
    owner: str
    call: Callable[..., Any]
    applies: Callable[[str, str], bool] | None = None


@dataclass
class Services:
    """Everything one app (or one CLI command) works with."""

    config: Config
    schema: Schema
    db: Database
    models: dict[str, type[peewee.Model]]
    system: SystemModels
    access: AccessRules
    records: Records
    functions: Functions
    auth: AuthService
    oauth: OAuthService
    realtime: Realtime
    events: Events
    hooks: list[RecordHook]  # who is registered on the record hook points, in order
    accounts: AccountFlows  # verification, password reset, email change (mailed tokens)
    storage: Storage  # blobs of file fields (alyx/storage/)
    files: FileAccess  # downloads, thumbnails and file tokens
    api_limiter: RedisRateLimiter | SqlRateLimiter | None  # api.rate_limit across workers and hosts (None: off)
    status: ServerStatus  # what /api/health reports
    batch: Batch  # POST /api/batch: record writes in one transaction

    def migrator(self) -> Migrator:
        return Migrator(self.db, self.schema, self.models, self.system)

    def close(self) -> None:
        self.events.close()  # first: its loop may be running a function
        self.functions.close()  # stops the sandboxes this app started (none if no function ran)
        self.db.close()


def record_hooks(auth: AuthService, realtime: Realtime, events: Events) -> list[RecordHook]:
    """Who is on the record hook points, in the order they run."""
    return [
        RecordHook("guard", "events: sync database hooks", events.sync_hooks.run, events.sync_hooks.applies),
        RecordHook("begin", "realtime: the change feed's lock, before any row lock", realtime.feed.lock),
        RecordHook("journal", "auth: a deleted user's sessions end", auth.user_changed),
        RecordHook("journal", "realtime: change feed", realtime.feed.append),
        RecordHook("journal", "events: outbox (async hooks, outgoing webhooks; wakes the job runner at commit)",
                   events.outbox),
    ]


def register_record_hooks(records: Records, hooks: list[RecordHook]) -> None:
    """Register ``hooks`` on ``records`` in list order."""
    for hook in hooks:
        if hook.point == "guard":
            assert hook.applies is not None, f"guard {hook.owner!r} needs applies"
            records.guard(hook.call, hook.applies)
        elif hook.point == "begin":
            records.on_begin(hook.call)
        elif hook.point == "journal":
            records.journal(hook.call)
        else:
            records.subscribe(hook.call)


def api_limiter(config: Config, db: Database) -> RedisRateLimiter | SqlRateLimiter | None:
    """api.rate_limit shared by every worker and host: in Redis when realtime.broker is redis://, else in
    the app's database (alyx/ratelimit.py); None when the limit is off."""
    if config.api_rate_limit <= 0:
        return None
    limit, window = config.api_rate_limit, max(1, config.api_rate_limit_window)
    broker = config.realtime_broker or ""
    if broker.startswith(("redis://", "rediss://", "unix://")):
        # One namespace per app (its database), as the realtime channel: apps sharing a Redis never share buckets.
        namespace = format(zlib.crc32(config.database_display.encode()), "08x")
        return RedisRateLimiter(limit, window, redis.Redis.from_url(broker, socket_timeout=5),
                                prefix=f"alyx:ratelimit:{namespace}:")
    return SqlRateLimiter(limit, window, db.execute, db.connection, db.write, postgres=not db.is_sqlite)


def build_services(config: Config, migrate: bool = True) -> Services:
    """Load the schema, open the database, apply safe migrations (refuse destructive ones)."""
    schema = load_schema(config.schema_path)
    db = Database(config)
    try:
        models = build_models(schema, db.peewee)
        system = build_system_models(db.peewee)
        access = AccessRules(schema, models, postgres=not db.is_sqlite)
        storage = open_storage(config)
        records = Records(db, schema, models, access, config.api_default_per_page, config.api_max_per_page,
                          files=RecordFiles(storage))
        # The sandbox manager inside starts on the first function call (or prewarm), not here.
        functions = Functions(config, db, system.execution, settings=PoolSettings(
            warm_per_runtime=config.functions_warm_pool, idle_ttl=config.functions_idle_ttl,
            memory_budget=config.functions_memory_budget_mb, max_response_bytes=config.functions_max_response_bytes))
        auth = AuthService(config, db, records, access, system)  # signing keys load on first use
        oauth = OAuthService(config, db, records, access, system, schema=schema, auth=auth)
        realtime = Realtime(config, db, records, access, auth)
        events = Events(config, db, functions)
        hooks = record_hooks(auth, realtime, events)
        register_record_hooks(records, hooks)
        accounts = AccountFlows(config, db, system, auth, Mailer(config))
        files = FileAccess(records, storage, lambda: auth.keys, config.storage_token_ttl)
        services = Services(config, schema, db, models, system, access, records, functions, auth, oauth, realtime,
                            events, hooks, accounts, storage, files, api_limiter(config, db),
                            ServerStatus(config, schema, db, functions, realtime,
                                         lambda: Migrator(db, schema, models, system)),
                            Batch(db, records, config.api_max_batch))
        if migrate:
            apply_safe_migrations(services)
    except peewee.OperationalError as exc:
        db.close()
        raise ConfigError(f"database {config.database_display}: cannot be used: {exc}") from None
    except BaseException:
        db.close()
        raise
    return services


def apply_safe_migrations(services: Services) -> Plan:
    """Apply what is safe; raise ConfigError (naming the command to run) when something is not.

    Alyx's own tables first (numbered system migrations), then the schema's, under one lock.
    """
    with services.db.connection(), migration_lock(services.db):
        apply_system_migrations(services.db)
        migrator = services.migrator()
        plan = migrator.plan()
        migrator.apply(plan, allow_destructive=False)
        for step in plan.steps:
            log.info("migration applied: %s", step.describe())
        return plan
