"""Anonymous input that once answered 500 (issue 15 item 9): every one is a 400 with a message, on
both databases, through REST and realtime `subscribe` frames alike."""
from __future__ import annotations

import pytest

from alyx.errors import AlyxError
from alyx.realtime import Client
from tests.conftest import TEST_ENV, AppMaker
from tests.helpers import assert_error

SCHEMA = """
collections:
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: n, type: int}
      - {name: score, type: float}
    rules: {list: "true", view: "true", create: "true"}
"""
HUGE = "9" * 400
HOSTILE_FILTERS = [
    'title == "\\U00110000"',
    f"n == {HUGE}",
    f"n == -{HUGE}",
    f"n in [1, {HUGE}]",
    f"score < {HUGE}",
    f"n == {HUGE}u",
    f"n == 0x{'f' * 400}",
    f"n == {HUGE}.5",
    "score > 1e999",
]
HOSTILE_PARAMS = [{"n": HUGE}, {"n": f"-{HUGE}"}, {"score": HUGE}, {"score": "nan"}, {"score": "inf"},
                  {"n": "99999999999999999999"}, {"page": HUGE}, {"perPage": HUGE}, {"page": "99999999999999999999"}]


@pytest.fixture
def app(tmp_path, database_env):
    maker = AppMaker(tmp_path, {**TEST_ENV, **database_env}, test_users=True)
    yield maker(SCHEMA)
    maker.close()


@pytest.mark.parametrize("expr", HOSTILE_FILTERS)
def test_hostile_filters_are_400(app, expr):
    client = app.test_client()
    assert client.post("/api/collections/posts", json={"title": "a", "n": 1}).status_code == 201
    error = assert_error(client.get("/api/collections/posts", query_string={"filter": expr}), 400, "bad_request")
    assert error["message"]


@pytest.mark.parametrize("params", HOSTILE_PARAMS, ids=lambda p: ",".join(f"{k}={v[:12]}" for k, v in p.items()))
def test_hostile_list_parameters_are_400(app, params):
    error = assert_error(app.test_client().get("/api/collections/posts", query_string=params), 400, "bad_request")
    assert error["message"]


@pytest.mark.parametrize("payload", [{"filter": f} for f in HOSTILE_FILTERS]
                         + [{"since": 18446744073709551615}, {"limit": 10**30}, {"filter": "n == 1", "sort": "n"}])
def test_hostile_subscribe_frames_are_400(app, payload):
    rt = app.extensions["alyx"].realtime
    client = Client(rt, "c1", wake=lambda: None)
    try:
        rt.subscribe(client, {"collection": "posts", **payload}, "1")
    except AlyxError as exc:
        assert 400 <= exc.status < 500 and exc.message, exc  # a cursor from nowhere is 410, as any unknown one
    finally:
        rt.end_subscriptions(client)


@pytest.mark.parametrize("path", ["/api/jobs/" + HUGE, "/api/jobs/99999999999999999999",
                                  "/api/jobs/99999999999999999999/retry"])
def test_huge_job_ids_are_400(app, path):
    client = app.test_client()
    call = client.post if path.endswith("/retry") else client.get
    error = assert_error(call(path, headers={"X-Test-User": "admin"}), 400, "bad_request")
    assert error["message"]


@pytest.mark.parametrize("environment", ["production", "development"])
def test_anonymous_health_is_status_and_version_only_in_production(tmp_path, environment):
    """An anonymous caller or a plain user learns status and version only (issue 15 item 17); admins
    see the whole report; a development server shows everyone a summary without the admin details."""
    maker = AppMaker(tmp_path, {**TEST_ENV, "ALYX_SERVER_ENVIRONMENT": environment,
                                "ALYX_AUTH_SECRET": "health-test-secret-" + "x" * 32}, test_users=True)
    try:
        client = maker(SCHEMA).test_client()
        full = client.get("/api/health", headers={"X-Test-User": "admin"}).get_json()
        assert full["status"] == "ok" and "posts" in full["collections"] and "functions" in full
        for who in ({}, {"X-Test-User": "user"}):
            seen = client.get("/api/health", headers=who).get_json()
            if environment == "production":
                assert seen == {"status": "ok", "version": full["version"]}
            else:
                assert seen["collections"] == full["collections"] and "images" not in seen["functions"]
                assert not {"realtime", "workers", "migrations"} & seen.keys()
    finally:
        maker.close()
