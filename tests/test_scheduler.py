"""The scheduler on real databases: one runner at a time (lease), persisted next runs, catch-up, the HTTP side.

Time is simulated (``tick(now=...)``) so that hours pass in milliseconds; the runners of these apps
are off (events.runner: off) and the tests drive ticks and job runs themselves.
"""
from __future__ import annotations

import datetime as dt
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import AppMaker
from tests.helpers import assert_error

T0 = dt.datetime(2026, 6, 1, 12, 0, 0)
REPORT = '''
import json
def handler(req, res):
    print(json.dumps(req.input))
    return res.json({"done": True})
'''
MANIFEST = """
runtime: python
schedules:
  - {name: every-minute, type: interval, expression: 1m, config: {input: {kind: minute}}}
  - {name: hourly-once, type: interval, expression: 1h, catch_up: once}
  - {name: hourly-all, type: interval, expression: 1h, catch_up: all}
  - {name: hourly-none, type: interval, expression: 1h, catch_up: none}
  - {name: nightly, type: cron, expression: "30 2 * * *", timezone: America/New_York}
"""

Apps = Callable[..., Flask]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "functions" / "report").mkdir(parents=True)
    (folder / "schema.yaml").write_text("collections: []\n")
    (folder / "functions" / "report" / "manifest.yaml").write_text(textwrap.dedent(MANIFEST))
    (folder / "functions" / "report" / "index.py").write_text(textwrap.dedent(REPORT))
    return folder


@pytest.fixture
def apps(project: Path, database_env: dict[str, str]) -> Iterator[Apps]:
    """Apps (think: workers or hosts) on the same project and database, runners off."""
    maker = AppMaker(project.parent, {
        "ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_SERVER_ENVIRONMENT": "development",
        "ALYX_EVENTS_RUNNER": "off", "ALYX_SCHEDULES_LEASE_SECONDS": "15", **database_env}, test_users=True)

    def make() -> Flask:
        return maker(project=project)

    yield make
    maker.close()


def schedule_jobs(app: Flask) -> list[dict]:
    return app.extensions["alyx"].events.jobs.list({"trigger_type": "schedule", "limit": "500"})


def test_two_workers_never_queue_the_same_run(apps: Apps) -> None:
    a, b = apps(), apps()
    ea, eb = a.extensions["alyx"].events, b.extensions["alyx"].events
    leaders: list[str] = []
    for step in range(0, 10 * 60 + 1, 5):  # ten simulated minutes, both ticking at the same instants
        now = T0 + dt.timedelta(seconds=step)
        threads = [threading.Thread(target=e.scheduler.tick, args=(now,)) for e in (ea, eb)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not (ea.scheduler.leader and eb.scheduler.leader)
        leaders.append("a" if ea.scheduler.leader else "b" if eb.scheduler.leader else "-")
    assert len(set(leaders)) == 1 and leaders[0] != "-"  # one runner, and the lease stays with it
    minute = [j for j in schedule_jobs(a) if j["payload"]["schedule"] == "report/every-minute"]
    due = sorted(j["payload"]["scheduled_for"] for j in minute)
    assert len(due) == len(set(due)) == 10  # every minute exactly once
    assert minute[0]["payload"]["input"] == {"kind": "minute"}


def test_a_dead_leader_is_taken_over_without_gaps_or_doubles(apps: Apps) -> None:
    a, b = apps(), apps()
    ea, eb = a.extensions["alyx"].events, b.extensions["alyx"].events
    ea.scheduler.tick(T0)
    assert ea.scheduler.leader
    for step in range(5, 181, 5):  # a stops at T0+3m (killed); b keeps asking
        now = T0 + dt.timedelta(seconds=step)
        ea.scheduler.tick(now)
        eb.scheduler.tick(now)
    assert ea.scheduler.leader and not eb.scheduler.leader
    for step in range(185, 421, 5):  # a is gone
        eb.scheduler.tick(T0 + dt.timedelta(seconds=step))
    assert eb.scheduler.leader  # taken over once a's 15 s lease lapsed
    due = sorted(j["payload"]["scheduled_for"] for j in schedule_jobs(a)
                 if j["payload"]["schedule"] == "report/every-minute")
    assert due == [(T0 + dt.timedelta(minutes=m)).isoformat(timespec="milliseconds") + "Z" for m in range(1, 8)]


def test_next_runs_survive_restarts_and_missed_runs_follow_catch_up(apps: Apps) -> None:
    first = apps()
    first.extensions["alyx"].events.scheduler.tick(T0)
    first.extensions["alyx"].close()  # the server goes down for five and a half hours
    second = apps()
    events = second.extensions["alyx"].events
    events.scheduler.tick(T0 + dt.timedelta(hours=5, minutes=30))
    counts: dict[str, int] = {}
    for job in schedule_jobs(second):
        counts[job["payload"]["schedule"]] = counts.get(job["payload"]["schedule"], 0) + 1
    assert counts == {"report/hourly-once": 1, "report/hourly-all": 5, "report/every-minute": 1}
    listed = {s["name"]: s for s in events.scheduler.list()["items"]}
    assert listed["hourly-none"]["last_run_at"] is None
    assert listed["hourly-none"]["next_run_at"] == "2026-06-01T18:30:00.000Z"  # skipped to the future
    assert listed["hourly-all"]["last_run_at"] == "2026-06-01T17:00:00.000Z"
    assert listed["nightly"]["next_run_at"] == "2026-06-02T06:30:00.000Z"  # 02:30 in New York (EDT)


def test_schedules_api_lists_and_an_admin_runs_one_now(apps: Apps) -> None:
    app = apps()
    events = app.extensions["alyx"].events
    c = app.test_client()
    assert_error(c.get("/api/schedules"), 401, "unauthorized")
    events.scheduler.tick()
    listed = c.get("/api/schedules", headers={"X-Test-User": "admin"})
    assert listed.status_code == 200
    assert listed.json["leader"] == events.worker_id
    item = next(s for s in listed.json["items"] if s["name"] == "every-minute")
    assert item["function"] == "report" and item["type"] == "interval" and item["next_run_at"]
    ran = c.post("/api/schedules/report/every-minute/run", headers={"X-Test-User": "admin"})
    assert ran.status_code == 202 and ran.json["job_id"]
    assert_error(c.post("/api/schedules/report/nope/run", headers={"X-Test-User": "admin"}), 404, "not_found")
    assert events.run_due_jobs() == 1
    (run,) = events.functions.executions.list({"function_id": "report"})["items"]
    assert run["trigger_type"] == "schedule" and run["status"] == "success"
    assert run["input"] == {"kind": "minute"} and '{"kind": "minute"}' in run["logs"]["stdout"]


def test_a_broken_manifest_is_reported_not_fatal(apps: Apps, project: Path) -> None:
    (project / "functions" / "broken").mkdir()
    (project / "functions" / "broken" / "index.py").write_text(REPORT)
    (project / "functions" / "broken" / "manifest.yaml").write_text(
        "runtime: python\nschedules:\n  - {name: x, type: cron, expression: 'not cron'}\n")
    app = apps()
    listed = app.test_client().get("/api/schedules", headers={"X-Test-User": "admin"}).json
    assert [e["function"] for e in listed["errors"]] == ["broken"]
    assert "cron expression" in listed["errors"][0]["message"]
    assert {s["function"] for s in listed["items"]} == {"report"}
