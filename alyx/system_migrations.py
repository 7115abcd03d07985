"""Numbered migrations of Alyx's own tables (``_alyx_*``): each step runs once per database, recorded.

User tables follow schema.yaml (alyx/migrations.py); Alyx's own tables follow this list, the way
PocketBase keeps numbered migrations for its own schema. A release that adds a column to
``_alyx_jobs`` appends a step here; every install, new or old, runs the steps it has not recorded,
in order, each in its own transaction together with its record in ``_alyx_system_migrations``.

Callers hold ``migration_lock`` (alyx/migrations.py) around ``apply_system_migrations``, the same
lock as user migrations, so two processes never run a step twice. Step 1 creates every system
table that exists today with ``safe=True``: an install made before this scheme (tables present, no
record) adopts it by recording step 1 without changing anything.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import peewee

from alyx.clock import utcnow
from alyx.db import Database, tuple_rows
from alyx.models import bind, build_change_model, build_event_models, build_system_models
from alyx.ratelimit import TABLE_DDL as RATE_LIMIT_DDL

log = logging.getLogger("alyx")

RECORD_TABLE = "_alyx_system_migrations"


@dataclass(frozen=True)
class SystemMigration:
    """One numbered change to Alyx's own tables; ``run`` gets the database it applies to."""

    number: int
    name: str
    run: Callable[[Database], None]

    def describe(self) -> str:
        return f"system {self.number:04d}: {self.name}"


def _create_system_tables(db: Database) -> None:
    """Every system table of the layout before numbered migrations (present ones are kept as they are)."""
    tables: list[type[peewee.Model]] = [
        *build_system_models(db.peewee).all,
        *build_event_models(db.peewee).all,
        build_change_model(db.peewee),
    ]
    db.peewee.create_tables(tables, safe=True)


def _create_webhook_replays(db: Database) -> None:
    """Signatures of timestamped webhooks already accepted, refused a second time (issue 15.6)."""
    db.peewee.create_tables([build_event_models(db.peewee).replay], safe=True)


def _create_rate_limits(db: Database) -> None:
    """The API rate limit's token buckets when no Redis broker holds them (alyx/ratelimit.py)."""
    db.execute(RATE_LIMIT_DDL)


def _create_account_tokens(db: Database) -> None:
    """The mailed single-use tokens of the account flows (verification, password reset, email change)."""
    db.peewee.create_tables([build_system_models(db.peewee).account_token], safe=True)


def _drop_feed_time_index(db: Database) -> None:
    """The change feed prunes by cursor now (alyx/realtime/feed.py): its created_at index only cost writes."""
    db.execute("DROP INDEX IF EXISTS feedchange_created_at")


# The ordered list. Append only: a step's number and effect never change once released.
STEPS: tuple[SystemMigration, ...] = (
    SystemMigration(1, "create the system tables", _create_system_tables),
    SystemMigration(2, "create _alyx_webhook_replays", _create_webhook_replays),
    SystemMigration(3, "create _alyx_account_tokens", _create_account_tokens),
    SystemMigration(4, "create alyx_rate_limits", _create_rate_limits),
    SystemMigration(5, "drop the change feed's created_at index", _drop_feed_time_index),
)


class AppliedMigration(peewee.Model):
    """One applied system migration (the record table; the only table this module creates itself)."""

    number = peewee.IntegerField(primary_key=True)
    name = peewee.TextField()
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = RECORD_TABLE


def _record_model(db: Database) -> type[AppliedMigration]:
    """The record table's model bound to ``db`` (each app gets its own class)."""
    return bind(AppliedMigration, db.peewee)


def _checked(steps: Sequence[SystemMigration]) -> Sequence[SystemMigration]:
    numbers = [step.number for step in steps]
    if numbers != sorted(set(numbers)) or (numbers and numbers[0] < 1):
        raise ValueError(f"system migrations must be numbered 1, 2, ... in order without repeats: {numbers}")
    return steps


def applied_numbers(db: Database) -> set[int]:
    """The numbers of the system migrations recorded in ``db`` (empty before the first start)."""
    if RECORD_TABLE not in db.peewee.get_tables():
        return set()
    model = _record_model(db)
    return {number for (number,) in tuple_rows(model.select(model.number))}


def pending_system_migrations(db: Database, steps: Sequence[SystemMigration] | None = None
                              ) -> list[SystemMigration]:
    """The steps ``db`` has not recorded yet, in order."""
    done = applied_numbers(db)
    return [step for step in _checked(STEPS if steps is None else steps) if step.number not in done]


def apply_system_migrations(db: Database, steps: Sequence[SystemMigration] | None = None
                            ) -> list[SystemMigration]:
    """Run every pending step in order, each in one transaction with its record; returns those run.

    Call it inside ``migration_lock(db)`` with a connection open. ``steps`` defaults to ``STEPS``
    (looked up at call time).
    """
    model = _record_model(db)
    model.create_table(safe=True)
    ran: list[SystemMigration] = []
    for step in pending_system_migrations(db, steps):
        with db.write():
            step.run(db)
            model.insert(number=step.number, name=step.name, applied_at=utcnow()).execute()
        log.info("migration applied: %s", step.describe())
        ran.append(step)
    return ran
