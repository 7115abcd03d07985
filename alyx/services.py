"""Builds the services of one Alyx instance from a Config — no Flask, so the CLI uses it too."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import peewee

from alyx.config import Config
from alyx.db import Database
from alyx.errors import ConfigError
from alyx.events import Events
from alyx.functions import Functions
from alyx.migrations import Migrator, Plan, migration_lock
from alyx.models import SystemModels, build_models, build_system_models
from alyx.realtime import Realtime
from alyx.records import Records
from alyx.rules import AccessRules
from alyx.schema import Schema, load_schema

if TYPE_CHECKING:
    from alyx.auth import AuthService
    from alyx.oauth import OAuthService

log = logging.getLogger("alyx")


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
    realtime: Realtime | None = None
    events: Events | None = None

    @functools.cached_property
    def auth(self) -> AuthService:
        """Passwords, tokens and sessions (alyx/auth.py); signing keys load on first use."""
        from alyx.auth import AuthService

        return AuthService(self)

    @functools.cached_property
    def oauth(self) -> OAuthService:
        """OAuth2/OIDC login with the providers of alyx.yaml auth.oauth (alyx/oauth.py)."""
        from alyx.oauth import OAuthService

        return OAuthService(self)

    @functools.cached_property
    def functions(self) -> Functions:
        """Functions: discovery, sandboxes (started on first call) and the execution log."""
        from alyx.sandbox import PoolSettings

        settings = PoolSettings(warm_per_runtime=self.config.functions_warm_pool,
                                idle_ttl=self.config.functions_idle_ttl,
                                memory_budget=self.config.functions_memory_budget_mb)
        return Functions(self.config, self.db, self.system.execution, settings=settings)

    def migrator(self) -> Migrator:
        return Migrator(self.db, self.schema, self.models, self.system)

    def close(self) -> None:
        if self.events is not None:  # first: its loop may be running a function
            self.events.close()
        if "functions" in self.__dict__:  # stop the sandboxes this app started
            self.functions.close()
        self.db.close()


def build_services(config: Config, migrate: bool = True) -> Services:
    """Load the schema, open the database, apply safe migrations (refuse destructive ones)."""
    schema = load_schema(config.schema_path)
    db = Database(config)
    try:
        models = build_models(schema, db.peewee)
        system = build_system_models(db.peewee)
        access = AccessRules(schema, models, postgres=not db.is_sqlite)
        services = Services(config, schema, db, models, system, access,
                            Records(db, schema, models, access, config.api_default_per_page,
                                    config.api_max_per_page))
        services.realtime = Realtime(config, db, services.records, access)
        services.events = Events(config, db, services.records, services.functions)
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
    """Apply what is safe; raise ConfigError (naming the command to run) when something is not."""
    with services.db.connection(), migration_lock(services.db):
        migrator = services.migrator()
        plan = migrator.plan()
        migrator.apply(plan, allow_destructive=False)
        if services.realtime is not None:
            services.realtime.install()
        if services.events is not None:
            services.events.install()
        for step in plan.steps:
            log.info("migration applied: %s", step.describe())
        return plan
