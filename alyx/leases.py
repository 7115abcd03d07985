"""Lease rows: one holder at a time for a named background loop, across workers and hosts.

A holder renews its lease well before it expires; when a holder dies its lease lapses and the
next process to ask takes it over. Every change is one conditional UPDATE (or an INSERT that a
primary key makes unique), so two processes can never both succeed. Times are the app servers'
clocks: hosts are expected to keep them in sync (NTP), to within a fraction of the lease time.
"""
from __future__ import annotations

import datetime as dt

import peewee

from alyx.clock import utcnow
from alyx.db import Database
from alyx.models import Lease


class Leases:
    """Acquire, renew and release named leases stored in one table."""

    def __init__(self, db: Database, model: type[Lease]) -> None:
        self.db = db
        self.model = model

    def acquire(self, name: str, holder: str, seconds: float, now: dt.datetime | None = None) -> bool:
        """Take or renew ``name`` for ``holder`` for ``seconds``; False when someone else holds it."""
        now = now or utcnow()
        until = now + dt.timedelta(seconds=seconds)
        m = self.model
        with self.db.connection():
            with self.db.write():
                renewed = m.update(expires_at=until).where((m.name == name) & (m.holder == holder)).execute()
                if renewed:
                    return True
                taken = (m.update(holder=holder, expires_at=until, acquired_at=now)
                         .where((m.name == name) & (m.expires_at < now)).execute())
                if taken:
                    return True
                if m.select().where(m.name == name).exists():
                    return False
            try:
                with self.db.write():
                    m.insert(name=name, holder=holder, expires_at=until, acquired_at=now).execute()
                return True
            except peewee.IntegrityError:  # another process inserted it first
                return False

    def release(self, name: str, holder: str) -> None:
        """Give the lease up now (a clean shutdown), so another process need not wait for it to lapse."""
        m = self.model
        with self.db.connection(), self.db.write():
            m.delete().where((m.name == name) & (m.holder == holder)).execute()

    def holder(self, name: str, now: dt.datetime | None = None) -> str | None:
        """Who holds ``name`` right now (None when nobody does or the lease lapsed)."""
        now = now or utcnow()
        m = self.model
        with self.db.connection():
            row = m.select(m.holder).where((m.name == name) & (m.expires_at >= now)).first()
        return row.holder if row else None
