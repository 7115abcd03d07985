"""The execution log service on SQLite and PostgreSQL: filters, shape, pruning."""
from __future__ import annotations

import datetime as dt

import pytest

from alyx.errors import AlyxError
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
    newest = log.list({"function_id": "a", "limit": "2"})["items"]
    assert [r["id"] for r in newest] == [ids[4], ids[3]]
    assert newest[0]["logs"] == {"stdout": "out", "stderr": ""} and newest[0]["timings"] == {"handler": 1.0}
    assert newest[0]["started_at"] == "2026-01-01T00:00:04.000Z"
    assert log.get(ids[0])["status"] == "error"
    assert log.prune("a") == 2
    assert [r["id"] for r in log.list({"function_id": "a"})["items"]] == [ids[4], ids[3], ids[2]]
    assert len(log.list({"function_id": "b"})["items"]) == 1 and log.prune("b") == 0


def test_pages_go_back_in_time_by_cursor_and_new_runs_shift_nothing(make_app) -> None:
    svc = make_app().extensions["alyx"]
    log = Executions(svc.db, svc.system.execution)
    base = dt.datetime(2026, 1, 1)
    same_second = [record(log, "a", at=base) for _ in range(3)]  # ties on started_at: the id decides
    ids = [record(log, "a", at=base + dt.timedelta(seconds=i)) for i in range(1, 5)]
    first = log.list({"limit": "3"})
    assert [r["id"] for r in first["items"]] == [ids[3], ids[2], ids[1]] and first["next"] == ids[1]
    record(log, "a", at=base + dt.timedelta(seconds=9))  # a new run arrives while the admin reads
    second = log.list({"limit": "3", "before": first["next"]})
    tied = sorted(same_second, reverse=True)
    assert [r["id"] for r in second["items"]] == [ids[0], *tied[:2]]
    last = log.list({"limit": "3", "before": second["next"]})
    assert [r["id"] for r in last["items"]] == tied[2:] and last["next"] is None
    assert log.list({"function_id": "b", "before": ids[0]}) == {"items": [], "next": None}


def test_an_unknown_or_malformed_cursor_is_a_400(make_app) -> None:
    app = make_app()
    svc = app.extensions["alyx"]
    for before in ("nosuchexecutio", "x\x00y", "é" * 20):
        with pytest.raises(AlyxError) as refused:
            Executions(svc.db, svc.system.execution).list({"before": before})
        assert refused.value.status == 400 and "before" in refused.value.message
