"""The execution log service on SQLite and PostgreSQL: filters, shape, pruning."""
from __future__ import annotations

import datetime as dt

from alyx.executions import Executions


def record(log: Executions, function: str, status: str = "success", at: dt.datetime | None = None) -> str:
    return log.record(function=function, version="v1", trigger="http", status=status, input={"method": "GET"},
                      output={"status": 200}, error=None, stdout="out", stderr="", timings={"handler": 1.0},
                      duration_ms=1.5, tier="process", sandbox="sb", started_at=at)


def test_filters_shape_and_pruning(make_app) -> None:
    svc = make_app().extensions["alyx"]
    log = Executions(svc.db, svc.system.execution, keep=3)
    base = dt.datetime(2026, 1, 1)
    ids = [record(log, "a", "error" if i == 0 else "success", base + dt.timedelta(seconds=i)) for i in range(5)]
    record(log, "b", at=base)
    newest = log.list({"function_id": "a", "limit": "2"})
    assert [r["id"] for r in newest] == [ids[4], ids[3]]
    assert newest[0]["logs"] == {"stdout": "out", "stderr": ""} and newest[0]["timings"] == {"handler": 1.0}
    assert newest[0]["started_at"] == "2026-01-01T00:00:04.000Z"
    assert log.get(ids[0])["status"] == "error"
    assert log.prune("a") == 2
    assert [r["id"] for r in log.list({"function_id": "a"})] == [ids[4], ids[3], ids[2]]
    assert len(log.list({"function_id": "b"})) == 1 and log.prune("b") == 0
