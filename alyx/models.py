"""Collection specs → peewee models (one per collection), and Alyx's own system tables."""
from __future__ import annotations

import os
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import peewee

from alyx.clock import utcnow
from alyx.fields.datetime import DateTimeField as DateTimeField
from alyx.fields.json import json_text
from alyx.fields.registry import lookup
from alyx.fields.relation import ON_DELETE_SQL as ON_DELETE_SQL
from alyx.schema import CollectionSpec, Schema, creation_order

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 15


# Byte b < 252 → ID_ALPHABET[b % 36]; bytes 252..255 are dropped (252 = 7 * 36), so every character is uniform.
_ID_TABLE = bytes(ord(ID_ALPHABET[b % 36]) if b < 252 else 0 for b in range(256))
_ID_DROPPED = bytes(range(252, 256))
ID_BATCH_BYTES = 4096  # one os.urandom call per ~265 ids


def _id_batch() -> Iterator[str]:
    """The ids of one ``token_bytes`` call: 15-character slices of its bytes mapped to [a-z0-9]."""
    chars = secrets.token_bytes(ID_BATCH_BYTES).translate(_ID_TABLE, _ID_DROPPED).decode("ascii")
    return iter([chars[k:k + ID_LENGTH] for k in range(0, len(chars) - ID_LENGTH + 1, ID_LENGTH)])


_ids: list[Iterator[str]] = [iter(())]


def _forget_ids() -> None:
    """A forked child must not hand out the ids its parent has ready (both would create the same ones)."""
    _ids[0] = iter(())


os.register_at_fork(after_in_child=_forget_ids)


def new_id() -> str:
    """A record id: 15 random characters of [a-z0-9] (~77 bits), from the operating system's CSPRNG.

    One ``token_bytes`` call per id was a system call per create (~2% of a gevent worker's time on
    sequential creates, docs/benchmarks.md round 8); the ids of one 4 KiB call are handed out in turn
    instead. ``next`` on a list iterator is one step under the GIL, so two threads never get the same
    id; two that find the batch used up each make one, and the one not kept is dropped unused."""
    while True:
        for record_id in _ids[0]:
            return record_id
        _ids[0] = _id_batch()


class BaseModel(peewee.Model):
    """Models are bound to the app's database when they are built."""


# -- system tables ------------------------------------------------------------------------------
# Declared once here with their fields (so code that uses them is type-checked); each app binds its
# own subclasses to its database (``build_system_models``), so two apps never share a model class.
# Changes to these tables are numbered system migrations (alyx/system_migrations.py).
M = TypeVar("M", bound=peewee.Model)


def bind(model: type[M], database: peewee.Database) -> type[M]:
    """A subclass of ``model`` bound to ``database`` (same table, fields and indexes)."""
    meta = type("Meta", (), {"table_name": model._meta.table_name, "database": database})
    bound: type[M] = type(model.__name__, (model,), {"Meta": meta, "__module__": model.__module__})
    return bound


class MigrationStep(BaseModel):
    """History: one row per applied migration step."""

    id = peewee.AutoField()
    applied_at = peewee.DateTimeField(default=utcnow)
    collection = peewee.TextField()
    action = peewee.TextField()
    detail = peewee.TextField()
    destructive = peewee.BooleanField(default=False)

    class Meta:
        table_name = "_alyx_migrations"


class ManagedCollection(BaseModel):
    """Tables Alyx created: only these are ever dropped by a migration."""

    name = peewee.TextField(primary_key=True)
    created_at = peewee.DateTimeField(default=utcnow)
    field_types = peewee.TextField(null=True)

    class Meta:
        table_name = "_alyx_collections"


# Auth tables (alyx/auth.py). No foreign keys to `users`: system tables are created before the
# collections; the auth service checks that the user still exists instead.
class Session(BaseModel):
    """One signed-in device: its refresh tokens rotate inside it; revoking it ends them all."""

    id = peewee.CharField(primary_key=True, max_length=32)
    user_id = peewee.CharField(max_length=ID_LENGTH, index=True)
    method = peewee.TextField(default="password")  # password | oauth:<provider> | admin
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)
    revoked_reason = peewee.TextField(null=True)
    ip = peewee.TextField(null=True)
    user_agent = peewee.TextField(null=True)

    class Meta:
        table_name = "_alyx_sessions"


class RefreshToken(BaseModel):
    """A refresh token, stored as its SHA-256 only; used_at set when it is rotated."""

    token_hash = peewee.CharField(primary_key=True, max_length=64)
    session_id = peewee.CharField(max_length=32, index=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "_alyx_refresh_tokens"


class LoginAttempt(BaseModel):
    """Failed logins per key ('account:<email>' or 'ip:<address>'), for backoff across workers."""

    key = peewee.CharField(primary_key=True, max_length=300)
    failures = peewee.IntegerField(default=0)
    last_failure_at = peewee.DateTimeField(default=utcnow)
    locked_until = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "_alyx_login_attempts"


class OAuthIdentity(BaseModel):
    """A user's account at an OAuth2/OIDC provider (provider + subject → user)."""

    id = peewee.AutoField()
    provider = peewee.TextField()
    subject = peewee.TextField()
    user_id = peewee.CharField(max_length=ID_LENGTH, index=True)
    email = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "_alyx_oauth_identities"
        indexes = ((("provider", "subject"), True),)


class OAuthState(BaseModel):
    """A pending OAuth login: state (hashed), PKCE verifier and OIDC nonce, used once."""

    state_hash = peewee.CharField(primary_key=True, max_length=64)
    provider = peewee.TextField()
    code_verifier = peewee.TextField()
    nonce = peewee.TextField()
    redirect_uri = peewee.TextField()
    expires_at = peewee.DateTimeField()

    class Meta:
        table_name = "_alyx_oauth_states"


class AccountToken(BaseModel):
    """A mailed single-use token (verification, password reset, email change), stored only as SHA-256."""

    token_hash = peewee.CharField(primary_key=True, max_length=64)
    kind = peewee.CharField(max_length=20)  # verification | password_reset | email_change
    user_id = peewee.CharField(max_length=ID_LENGTH, index=True)
    new_email = peewee.CharField(max_length=254, null=True)  # for email_change: the address to move to
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "_alyx_account_tokens"


class Execution(BaseModel):
    """One function run (alyx/executions.py): trigger, input, output, status, timings, logs, error."""

    id = peewee.CharField(primary_key=True, max_length=ID_LENGTH)
    function_id = peewee.TextField(index=True)
    version = peewee.TextField()
    trigger_type = peewee.TextField()
    status = peewee.TextField()
    started_at = peewee.DateTimeField(default=utcnow, index=True)
    duration_ms = peewee.DoubleField()
    timings = peewee.JSONField(dumps=json_text)
    input = peewee.JSONField(dumps=json_text, null=True)
    output = peewee.JSONField(dumps=json_text, null=True)
    error = peewee.JSONField(dumps=json_text, null=True)
    stdout = peewee.TextField(default="")
    stderr = peewee.TextField(default="")
    tier = peewee.TextField(default="")
    sandbox = peewee.TextField(null=True)

    class Meta:
        table_name = "_alyx_executions"


FEED_TABLE = "_alyx_changes"


class FeedChange(BaseModel):
    """The change feed (alyx/realtime/feed.py): one row per committed write; ``id`` is the cursor."""

    id = peewee.BigAutoField()
    created_at = peewee.DateTimeField(default=utcnow)  # no index (system migration 5; ChangeFeed.prune)
    collection = peewee.TextField()
    action = peewee.TextField()
    record_id = peewee.TextField()
    data = peewee.TextField()  # JSON: {"record": {...}, "previous": {...} | null}

    class Meta:
        table_name = FEED_TABLE


def build_change_model(database: peewee.Database) -> type[FeedChange]:
    """The change feed table bound to ``database``."""
    return bind(FeedChange, database)


@dataclass(frozen=True)
class SystemModels:
    """Alyx's own tables, bound to one database (each app gets its own classes)."""

    migration_step: type[MigrationStep]
    managed_collection: type[ManagedCollection]
    session: type[Session]
    refresh_token: type[RefreshToken]
    login_attempt: type[LoginAttempt]
    oauth_identity: type[OAuthIdentity]
    oauth_state: type[OAuthState]
    execution: type[Execution]
    account_token: type[AccountToken]  # system migration 2 (not in `all`: step 1 must not change)

    @property
    def all(self) -> list[type[peewee.Model]]:
        return [self.execution, self.migration_step, self.managed_collection, self.session, self.refresh_token,
                self.login_attempt, self.oauth_identity, self.oauth_state]


def build_system_models(database: peewee.Database) -> SystemModels:
    """Alyx's own tables (migrations, auth, executions) bound to ``database``."""
    return SystemModels(bind(MigrationStep, database), bind(ManagedCollection, database), bind(Session, database),
                        bind(RefreshToken, database), bind(LoginAttempt, database), bind(OAuthIdentity, database),
                        bind(OAuthState, database), execution=bind(Execution, database),
                        account_token=bind(AccountToken, database))


def index_definitions(spec: CollectionSpec) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every index of a collection as (name, columns, unique), deterministic names for diffing."""
    result: list[tuple[str, tuple[str, ...], bool]] = [(f"idx_{spec.name}_created_at", ("created_at",), False)]
    for f in spec.fields:
        if f.unique:
            result.append((f"uq_{spec.name}_{f.name}", (f.name,), True))
        elif f.index or lookup(f.type).always_indexed:
            result.append((f"idx_{spec.name}_{f.name}", (f.name,), False))
    for idx in spec.indexes:
        result.append((idx.name, idx.fields, idx.unique))
    return result


def build_model(spec: CollectionSpec, models: dict[str, type[peewee.Model]], database: peewee.Database
                ) -> type[peewee.Model]:
    """One peewee model class for a collection."""
    attrs: dict[str, object] = {
        "id": peewee.CharField(primary_key=True, max_length=ID_LENGTH),
        "created_at": DateTimeField(),
        "updated_at": DateTimeField(),
    }
    for f in spec.fields:
        attrs[f.name] = lookup(f.type).column(f, models, spec.name)

    attrs["Meta"] = type("Meta", (), {"table_name": spec.name, "legacy_table_names": False, "database": database})
    model: type[peewee.Model] = type(f"Collection_{spec.name}", (BaseModel,), attrs)
    for name, cols, unique in index_definitions(spec):
        model.add_index(*[model._meta.fields[c] for c in cols], unique=unique, name=name)
    if spec.auth:
        model.add_index(model.index(peewee.fn.LOWER(model._meta.fields["email"]), unique=True,
                                    name=email_index_name(spec.name)))
    return model


def email_index_name(table: str) -> str:
    """The case-insensitive unique index on ``lower(email)`` of the auth collection (named outside
    ``idx_``/``uq_``, which the schema diff owns; alyx/migrations.py adds it to older tables)."""
    return f"ci_{table}_email"


def build_models(schema: Schema, database: peewee.Database) -> dict[str, type[peewee.Model]]:
    """Models for every collection, built in relation order, keyed by collection name."""
    models: dict[str, type[peewee.Model]] = {}
    for spec in creation_order(schema):
        models[spec.name] = build_model(spec, models, database)
    return {name: models[name] for name in schema.collections}


class Job(BaseModel):
    """One durable unit of work: a function run (hook, webhook, schedule, event) or an outgoing webhook."""

    id = peewee.BigAutoField()
    kind = peewee.TextField()  # function | outgoing
    target = peewee.TextField()  # function name, or outgoing webhook name
    trigger_type = peewee.TextField()  # database | webhook | schedule | event
    payload = peewee.JSONField(dumps=json_text, null=True)
    status = peewee.TextField(default="pending")  # pending | running | done | dead
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=1)
    run_at = peewee.DateTimeField(default=utcnow)
    locked_by = peewee.TextField(null=True)
    locked_until = peewee.DateTimeField(null=True)
    last_error = peewee.JSONField(dumps=json_text, null=True)
    last_execution_id = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "_alyx_jobs"
        indexes = ((("status", "run_at"), False),)


class Lease(BaseModel):
    """Who runs a background loop (e.g. the scheduler) until when; taken over once it expires."""

    name = peewee.TextField(primary_key=True)
    holder = peewee.TextField()
    expires_at = peewee.DateTimeField()
    acquired_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "_alyx_leases"


class Schedule(BaseModel):
    """Persisted state of one schedule (`<function>/<name>`): next and last run survive restarts."""

    key = peewee.TextField(primary_key=True)
    function = peewee.TextField()
    name = peewee.TextField()
    fingerprint = peewee.TextField()
    next_run_at = peewee.DateTimeField(null=True)
    last_run_at = peewee.DateTimeField(null=True)
    last_job_id = peewee.BigIntegerField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "_alyx_schedules"


class WebhookReplay(BaseModel):
    """One timestamped webhook signature already accepted (``<function>:<t>:<signature>``) until its
    timestamp leaves the tolerance window; a second delivery with it is a replay (alyx/events/replays.py)."""

    key = peewee.TextField(primary_key=True)
    expires_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "_alyx_webhook_replays"


@dataclass(frozen=True)
class EventModels:
    """The tables of events, webhooks and schedules (alyx/jobs.py, alyx/leases.py, alyx/scheduler.py)."""

    job: type[Job]
    lease: type[Lease]
    schedule: type[Schedule]
    replay: type[WebhookReplay]  # created by system migration 2, hence not in ``all`` (step 1's tables)

    @property
    def all(self) -> list[type[peewee.Model]]:
        return [self.job, self.lease, self.schedule]


def build_event_models(database: peewee.Database) -> EventModels:
    """The event tables bound to ``database``."""
    return EventModels(bind(Job, database), bind(Lease, database), bind(Schedule, database),
                       bind(WebhookReplay, database))
