"""The `alyx` command line: init, dev, migrate, admin, generate, runtimes, image."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
               f"Next: cd {target} && alyx dev")


@cli.command()
@click.option("--host", default=None, help="Override server.host.")
@click.option("--port", type=int, default=None, help="Override server.port.")
def dev(host: str | None, port: int | None) -> None:
    """Run the development server; it restarts when schema.yaml or alyx.yaml change."""
    from alyx.config import load_config
    from alyx.devserver import run_dev

    os.environ.setdefault("ALYX_SERVER_ENVIRONMENT", "development")  # a generated signing key is fine here
    try:
        config = load_config()
        code = run_dev(config, host or config.server_host, port or config.server_port)
    except ConfigError as exc:
        _fail(exc)
    sys.exit(code)


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
    from alyx.migrations import APPLY_DESTRUCTIVE_COMMAND, migration_lock
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
        click.echo(f"Destructive steps need: {APPLY_DESTRUCTIVE_COMMAND}")
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
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="A value for one of the users collection's own fields (repeatable): --field name=Ada.")
def admin_create(email: str, password_stdin: bool, promote: bool, fields: tuple[str, ...]) -> None:
    """Create an admin user EMAIL (the password is prompted for unless --password-stdin).

    Required fields of `users` that no --field gives are prompted for on a terminal."""
    from alyx.config import load_config
    from alyx.errors import AlyxError
    from alyx.services import build_services

    try:
        given = _parse_fields(fields)
    except ConfigError as exc:
        _fail(exc)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        services = build_services(load_config())
    except ConfigError as exc:
        _fail(exc)
    try:
        if services.auth.user_by_email(email) is None:
            given = _complete_user_fields(services, given, interactive=sys.stdin.isatty())
        user = services.auth.create_admin(email, password, promote=promote, fields=given)
    except ConfigError as exc:
        _fail(exc)
    except AlyxError as exc:
        details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.details.items())
        _fail(ConfigError(f"{exc.message}{' (' + details + ')' if details else ''}"))
    finally:
        services.close()
    click.echo(f"Admin {user['email']} ready (id {user['id']}).")


def _parse_fields(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--field name=value` options → {name: value} (a malformed one is a ConfigError)."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--field {pair!r}: expected NAME=VALUE, e.g. --field name=Ada")
        values[name.strip()] = value
    return values


def _complete_user_fields(services: Services, given: dict[str, str], interactive: bool) -> dict[str, Any]:
    """The --field values typed for the users collection, plus the required fields none gave (prompted for
    on a terminal; without one, a ConfigError naming them)."""
    from alyx.schema import default_auth_fields

    spec = services.schema.get("users")
    builtin = {f.name for f in default_auth_fields()}
    own = {f.name: f for f in (spec.fields if spec else ()) if f.name not in builtin and not f.hidden}
    unknown = sorted(set(given) - set(own))
    if unknown:
        known = ", ".join(sorted(own)) or "none"
        raise ConfigError(f"users has no field {', '.join(unknown)} to set with --field (its own fields: {known})")
    missing = [f.name for f in own.values() if f.required and f.default is None and f.name not in given]
    if missing and not interactive:
        options = " ".join(f"--field {name}=VALUE" for name in missing)
        raise ConfigError(f"users requires {', '.join(missing)}: pass {options} (or run on a terminal to be "
                          "asked)")
    values: dict[str, Any] = dict(given)
    for name in missing:
        values[name] = click.prompt(name)
    return {name: _typed(own[name].type, value) for name, value in values.items()}


def _typed(field_type: str, value: str) -> Any:
    """A value typed on the command line, as the field's type wants it (numbers, booleans, JSON)."""
    import yaml

    if field_type in ("int", "float", "bool", "json"):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


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
def image() -> None:
    """The Alyx server image (Dockerfile at the repository root; docs/deploy.md)."""


@image.command("build")
@click.option("--mode", type=click.Choice(["auto", "online", "offline"]), default="auto", show_default=True,
              help="online: python base from a registry, pip install; offline: the local debootstrap base "
                   "with this environment's packages copied in; auto: online if reachable.")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs' hash matches the image.")
def image_build(mode: str, force: bool) -> None:
    """Build alyx/alyx:latest (also tagged as the README names it); cached by a hash of its inputs."""
    from alyx.sandbox.images import BuildError, build_app_image

    try:
        built = build_app_image(mode, echo=click.echo, force=force)
    except BuildError as exc:
        _fail(exc)
    click.echo(f"Image ready: {built}")


@cli.group()
def generate() -> None:
    """Generate typed clients and the function SDK from schema.yaml (docs/clients.md)."""


def _generated(files_and_hash: tuple[dict[str, str], str], output: str, check: bool) -> None:
    from alyx.generate.run import apply

    outcome = apply(*files_and_hash, Path(output), check)
    for path in outcome.paths:
        click.echo(f"{'stale' if check else 'wrote'} {Path(output) / path}")
    if not outcome.ok:
        _fail(ConfigError(f"{output} is out of date with schema.yaml (sha256 {outcome.schema_hash[:12]}); "
                          "run the same command without --check"))
    click.echo(f"{output}: up to date (schema sha256 {outcome.schema_hash[:12]})")


@generate.command("client")
@click.option("--lang", type=click.Choice(["typescript", "go", "python"]), required=True)
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--check", is_flag=True, help="Write nothing; exit non-zero when the folder is stale (CI).")
def generate_client(lang: str, output: str, check: bool) -> None:
    """Write a typed client package for the project's schema."""
    from alyx.config import load_config
    from alyx.generate.run import client_files

    try:
        _generated(client_files(load_config().schema_path, lang), output, check)
    except ConfigError as exc:
        _fail(exc)


@generate.command("sdk")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--check", is_flag=True, help="Write nothing; exit non-zero when the folder is stale (CI).")
def generate_sdk(output: str, check: bool) -> None:
    """Write the typed function SDK (getContext()) as TypeScript."""
    from alyx.config import load_config
    from alyx.generate.run import sdk_files

    try:
        _generated(sdk_files(load_config().schema_path), output, check)
    except ConfigError as exc:
        _fail(exc)


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
