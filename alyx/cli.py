"""The `alyx` command line: init, dev, migrate, admin (and later generate, runtimes)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from alyx.errors import ConfigError

if TYPE_CHECKING:
    from alyx.services import Services

SCAFFOLD = Path(__file__).resolve().parent / "scaffold"


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(2)


@click.group()
@click.option("--project", "-p", type=click.Path(file_okay=False), envvar="ALYX_PROJECT_DIR",
              help="Project folder holding alyx.yaml, schema.yaml and functions/ (default: current folder).")
@click.version_option(package_name=None, prog_name="alyx", message="%(prog)s %(version)s",
                      version=__import__("alyx").__version__)
def cli(project: str | None) -> None:
    """Alyx: schema.yaml in; REST API, auth, realtime and functions out."""
    if project:
        os.environ["ALYX_PROJECT_DIR"] = str(Path(project).resolve())


@cli.command()
@click.argument("name", type=click.Path(file_okay=False))
def init(name: str) -> None:
    """Create a new project folder NAME with alyx.yaml, schema.yaml and functions/."""
    target = Path(name)
    if target.exists() and any(target.iterdir()):
        _fail(ConfigError(f"{target} already exists and is not empty; choose another name"))
    (target / "functions").mkdir(parents=True, exist_ok=True)
    shutil.copy(SCAFFOLD / "alyx.yaml", target / "alyx.yaml")
    shutil.copy(SCAFFOLD / "schema.yaml", target / "schema.yaml")
    shutil.copy(SCAFFOLD / "gitignore", target / ".gitignore")
    (target / "functions" / ".gitkeep").touch()
    click.echo(f"Created {target}/ (alyx.yaml, schema.yaml, functions/).\n"
               f"Next: cd {target} && alyx dev   (or: python -m alyx --project {target} dev)")


@cli.command()
@click.option("--host", default=None, help="Override server.host.")
@click.option("--port", type=int, default=None, help="Override server.port.")
def dev(host: str | None, port: int | None) -> None:
    """Run the development server; it restarts when schema.yaml or alyx.yaml change."""
    from werkzeug.serving import run_simple

    from alyx.config import load_config
    from alyx.devserver import dev_app

    os.environ.setdefault("ALYX_SERVER_ENVIRONMENT", "development")  # a generated signing key is fine here
    try:
        config = load_config()
    except ConfigError as exc:
        _fail(exc)
    watched = [str(config.project_dir / "schema.yaml"), str(config.project_dir / "alyx.yaml")]
    run_simple(host or config.server_host, port or config.server_port, dev_app(config.project_dir),
               use_reloader=True, extra_files=watched, reloader_type="stat", threaded=True)


@cli.group()
def migrate() -> None:
    """Inspect and apply schema migrations."""


def _migration_services() -> Services:
    """Services for a migrate command: nothing applied yet (the command decides)."""
    from alyx.config import load_config
    from alyx.services import build_services

    return build_services(load_config(), migrate=False)


@migrate.command("status")
def migrate_status() -> None:
    """List the steps between the database and schema.yaml, and the applied history."""
    from alyx.migrations import migration_lock
    from alyx.system_migrations import apply_system_migrations

    try:
        services = _migration_services()
        with services.db.connection():
            with migration_lock(services.db):  # Alyx's own tables first: they hold the history
                system_applied = apply_system_migrations(services.db)
            migrator = services.migrator()
            plan = migrator.plan()
            history = migrator.history()
    except ConfigError as exc:
        _fail(exc)
    click.echo(f"Database: {services.config.database_display}")
    for system_step in system_applied:
        click.echo(f"applied {system_step.describe()}")
    click.echo(f"Applied steps: {len(history)}")
    for row in history[-10:]:
        click.echo(f"  {row['applied_at']:%Y-%m-%d %H:%M:%S}  {row['collection']}: {row['detail']}")
    click.echo("Pending:" if plan.steps else "Pending: nothing, the database matches the schema.")
    for step in plan.steps:
        click.echo(f"  {step.describe()}")
    if plan.destructive:
        click.echo("Destructive steps need: alyx migrate apply --allow-destructive")
    services.close()


@migrate.command("apply")
@click.option("--allow-destructive", is_flag=True, help="Also apply drops, renames and type changes.")
def migrate_apply(allow_destructive: bool) -> None:
    """Apply pending migration steps (only safe ones unless --allow-destructive)."""
    from alyx.migrations import migration_lock
    from alyx.system_migrations import apply_system_migrations

    try:
        services = _migration_services()
        with services.db.connection(), migration_lock(services.db):
            system_applied = apply_system_migrations(services.db)
            migrator = services.migrator()
            plan = migrator.plan()
            applied = migrator.apply(plan, allow_destructive=allow_destructive)
    except ConfigError as exc:
        _fail(exc)
    for system_step in system_applied:
        click.echo(f"applied {system_step.describe()}")
    for step in applied:
        click.echo(f"applied {step.describe()}")
    click.echo(f"{len(applied)} step(s) applied." if applied else "Nothing to apply.")
    services.close()


@cli.group()
def admin() -> None:
    """Manage admin users (users with role admin)."""


@admin.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (first line).")
@click.option("--promote", is_flag=True, help="If the user exists, make them an admin and set this password.")
def admin_create(email: str, password_stdin: bool, promote: bool) -> None:
    """Create an admin user EMAIL (the password is prompted for unless --password-stdin)."""
    from alyx.config import load_config
    from alyx.errors import AlyxError
    from alyx.services import build_services

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        services = build_services(load_config())
    except ConfigError as exc:
        _fail(exc)
    try:
        user = services.auth.create_admin(email, password, promote=promote)
    except AlyxError as exc:
        details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.details.items())
        _fail(ConfigError(f"{exc.message}{' (' + details + ')' if details else ''}"))
    finally:
        services.close()
    click.echo(f"Admin {user['email']} ready (id {user['id']}).")


@cli.group()
def runtimes() -> None:
    """Function runtime images for the Docker sandbox tier."""


@runtimes.command("build")
@click.option("--mode", type=click.Choice(["auto", "online", "offline"]), default="auto", show_default=True,
              help="online: registry base images; offline: a local debootstrap base; auto: online if reachable.")
def runtimes_build(mode: str) -> None:
    """Build the runtime images from runtimes/*/Dockerfile (cached: a rerun takes seconds)."""
    from alyx.sandbox.images import BuildError, build_runtime_images

    try:
        images = build_runtime_images(mode, echo=click.echo)
    except BuildError as exc:
        _fail(exc)
    click.echo(f"Runtime images ready: {', '.join(images)}")

@cli.group()
def files() -> None:
    """Blobs of file fields."""


@files.command("sweep")
@click.option("--older-than", default=None, help="Keep orphans younger than this (default: storage.sweep_grace).")
def files_sweep(older_than: str | None) -> None:
    """Delete stored blobs that no record names (left by a crash between upload and commit)."""
    from alyx.config import load_config
    from alyx.file_sweep import sweep_orphans
    from alyx.services import build_services
    from alyx.units import parse_duration

    try:
        services = build_services(load_config())
        grace = parse_duration(older_than) if older_than else float(services.config.storage_sweep_grace)
    except (ConfigError, ValueError) as exc:
        _fail(exc)
    deleted = sweep_orphans(services.records, services.storage, grace)
    click.echo(f"{len(deleted)} orphan blob(s) deleted from {services.storage.name} storage.")
    services.close()


def main() -> None:
    import peewee

    try:
        cli(prog_name="alyx")
    except peewee.OperationalError as exc:  # e.g. a database server that cannot be reached: one line, no traceback
        lines = str(exc).strip().splitlines()
        _fail(ConfigError(f"cannot use the database: {lines[0] if lines else type(exc).__name__}"))
