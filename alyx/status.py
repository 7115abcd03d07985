"""What /api/health says: status and version to anyone; to admins (and, in development, a summary to
anyone) the database, collections, sandbox tier and runtime images, realtime broker, workers and the
migrations waiting for a command."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alyx import __version__
from alyx.config import Config, masked_value
from alyx.db import Database
from alyx.functions import Functions
from alyx.migrations import Migrator, pending_report
from alyx.realtime import Realtime
from alyx.realtime.brokers import PostgresBroker, RedisBroker
from alyx.schema import Schema


def gunicorn_workers(proc: Path = Path("/proc")) -> int | None:
    """How many workers the gunicorn master of this process runs on this host (None outside gunicorn)."""
    parent = os.getppid()
    try:
        if b"gunicorn" not in (proc / str(parent) / "cmdline").read_bytes():
            return None
        return len((proc / str(parent) / "task" / str(parent) / "children").read_text().split())
    except OSError:
        return None


@dataclass(eq=False)
class ServerStatus:
    """The health report of one app, assembled from the services that know each part."""

    config: Config
    schema: Schema
    db: Database
    functions: Functions
    realtime: Realtime
    migrator: Callable[[], Migrator]

    def public(self) -> dict[str, Any]:
        """Anyone's: the database answers (ping), status and version."""
        self.db.ping()
        return {"status": "ok", "version": __version__}

    def summary(self) -> dict[str, Any]:
        """Cheap details (what development shows to anyone): database kind, collections, functions' tier."""
        return {**self.public(), "database": "sqlite" if self.db.is_sqlite else "postgresql",
                "collections": sorted(self.schema.collections),
                "functions": {"sandbox": self.functions.describe_tier(), "setting": self.config.functions_sandbox,
                              "problems": self.functions.problems()}}

    def details(self) -> dict[str, Any]:
        """The admins' report: the summary plus runtime images, broker, workers and pending migrations."""
        report = self.summary()
        report["functions"]["images"] = self.functions.runtime_images()
        broker = self.realtime.broker
        report["realtime"] = {
            "broker": "redis" if isinstance(broker, RedisBroker) else "postgres" if isinstance(broker, PostgresBroker)
            else "none", "url": masked_value("realtime.broker", self.config.realtime_broker)}
        report["workers"] = {"configured": self.config.server_workers, "running": gunicorn_workers(),
                             "pid": os.getpid()}
        with self.db.connection():
            report["migrations"] = pending_report(self.migrator().plan())
        return report
