"""Numbered migrations of Alyx's own tables (alyx/system_migrations.py), on SQLite and PostgreSQL:
an install made by the previous layout adopts them, and a later step reaches an install exactly once."""
from __future__ import annotations

from pathlib import Path

import peewee
import pytest
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from alyx import system_migrations
from alyx.config import load_config
from alyx.db import Database
from alyx.models import build_event_models, build_system_models
from alyx.realtime import build_change_model
from alyx.services import build_services
from alyx.system_migrations import STEPS, SystemMigration, applied_numbers, pending_system_migrations
from tests.conftest import TEST_ENV, write_project

SCHEMA = """
collections:
  - name: notes
    fields:
      - {name: title, type: string}
    rules: {list: "true", view: "true", create: "true", update: "true", delete: "true"}
"""


@pytest.fixture
def config(tmp_path: Path, database_env: dict[str, str]):
    return load_config(write_project(tmp_path / "project", SCHEMA), env={**TEST_ENV, **database_env})


def columns(db: Database, table: str) -> set[str]:
    with db.connection():
        return {c.name for c in db.peewee.get_columns(table)}


def create_previous_layout(db: Database) -> None:
    """The system tables as the layout before numbered migrations made them: create_tables(safe=True) at start."""
    system, events = build_system_models(db.peewee), build_event_models(db.peewee)
    db.peewee.create_tables([*system.all, *events.all, build_change_model(db.peewee)], safe=True)


def test_a_fresh_database_records_every_step(config) -> None:
    services = build_services(config)
    try:
        with services.db.connection():
            assert applied_numbers(services.db) == {step.number for step in STEPS}
            assert pending_system_migrations(services.db) == []
            tables = set(services.db.peewee.get_tables())
        assert {"_alyx_jobs", "_alyx_sessions", "_alyx_changes", "_alyx_system_migrations", "notes"} <= tables
    finally:
        services.close()


def test_a_database_of_the_previous_layout_adopts_the_scheme(config) -> None:
    """Tables made by create_tables(safe=True) at start, with rows, and no migration record."""
    db = Database(config)
    try:
        with db.connection():
            create_previous_layout(db)
            build_event_models(db.peewee).lease.insert(name="scheduler", holder="old-worker",
                                                       expires_at="2026-01-01 00:00:00").execute()
            assert applied_numbers(db) == set()
    finally:
        db.close()
    services = build_services(config)
    try:
        with services.db.connection():
            assert applied_numbers(services.db) == {step.number for step in STEPS}  # step 1 adopted, later ones run
            lease = services.events.models.lease
            assert [r.holder for r in lease.select()] == ["old-worker"]  # step 1 kept what was there
            assert services.migrator().history()  # the user tables were migrated too (notes created)
    finally:
        services.close()


def test_a_later_step_reaches_an_existing_install_exactly_once(config, monkeypatch: pytest.MonkeyPatch) -> None:
    build_services(config).close()  # an install of the current release
    runs: list[str] = []

    def add_priority(db: Database) -> None:
        runs.append(db.config.database_display)
        migrator = SqliteMigrator(db.peewee) if db.is_sqlite else PostgresqlMigrator(db.peewee)
        migrate(migrator.add_column("_alyx_jobs", "priority", peewee.IntegerField(default=0)))

    later = (*STEPS, SystemMigration(len(STEPS) + 1, "jobs get a priority", add_priority))
    monkeypatch.setattr(system_migrations, "STEPS", later)
    for _ in range(2):  # the next release starts twice (or two workers start)
        services = build_services(config)
        try:
            assert "priority" in columns(services.db, "_alyx_jobs")
            with services.db.connection():
                assert applied_numbers(services.db) == {step.number for step in later}
        finally:
            services.close()
    assert len(runs) == 1


def test_steps_must_be_numbered_in_order(config) -> None:
    db = Database(config)
    try:
        with db.connection():
            bad = (SystemMigration(2, "b", lambda db: None), SystemMigration(1, "a", lambda db: None))
            with pytest.raises(ValueError, match="numbered"):
                pending_system_migrations(db, bad)
    finally:
        db.close()


def test_step_5_drops_the_change_feeds_time_index_of_an_earlier_install(config) -> None:
    """Installs made before step 5 have feedchange_created_at; the change feed prunes by cursor now."""
    db = Database(config)
    try:
        with db.connection():
            create_previous_layout(db)
            db.execute('CREATE INDEX "feedchange_created_at" ON "_alyx_changes" ("created_at")')
            system_migrations.apply_system_migrations(db, [step for step in STEPS if step.number < 5])
            assert [step.number for step in pending_system_migrations(db)] == [5]
            system_migrations.apply_system_migrations(db)
            assert "feedchange_created_at" not in {i.name for i in db.peewee.get_indexes("_alyx_changes")}
    finally:
        db.close()
