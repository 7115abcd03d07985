"""Functions end to end through the Flask app, the same tests on every sandbox tier (process, bwrap, docker).

A tier that cannot run here fails its tests (CI provisions bubblewrap and a Docker engine)."""
from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from alyx.sandbox import tier_problems
from tests.conftest import USER, AppMaker
from tests.harness import descendants

TIERS = ["process", "bwrap", "docker"]
SECRET = "s" * 40

HELLO_PY = '''
def handler(req, res):
    print("hello from python", req.method)
    return res.json({"hello": req.query.get("name", "world")})
'''
HELLO_JS = '''
export default async function handler(req, res) {
  console.log('hello from node', req.method);
  return res.json({ hello: req.query.name || 'world' });
}
'''
ECHO_PY = '''
def handler(req, res):
    res.header("X-Echo", "yes").status(201)
    return res.json({"method": req.method, "path": req.path, "query": req.query, "json": req.json,
                     "body": req.body if isinstance(req.body, str) else None, "auth": req.auth,
                     "header": req.headers.get("x-custom"), "has_cookie": "cookie" in req.headers})
'''
ECHO_CJS = '''
module.exports = async function (req, res) {
  res.setHeader('X-Echo', 'yes');
  return res.status(201).json({ method: req.method, path: req.path, query: req.query, json: req.json,
    body: req.body, auth: req.auth, header: req.headers['x-custom'] || null,
    has_cookie: 'cookie' in req.headers });
};
'''


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    problem = tier_problems(request.param)
    if problem:
        pytest.fail(f"sandbox tier {request.param} cannot run here: {problem} (run scripts/provision.sh)")
    return request.param


FnApp = Callable[..., Flask]


@pytest.fixture
def fn_app(tmp_path: Path, tier: str) -> Iterator[FnApp]:
    """An app (SQLite) whose functions/ holds the given files; its principal comes from X-Test-User."""
    maker = AppMaker(tmp_path, {"ALYX_FUNCTIONS_SANDBOX": tier, "ALYX_AUTH_SECRET": SECRET,
                                "ALYX_FUNCTIONS_IDLE_TTL": "600"}, test_users=True)

    def factory(files: dict[str, str], config: str = "", env: dict[str, str] | None = None,
                schema: str = "collections: []\n") -> Flask:
        return maker(schema, config, files=files, env=env)

    yield factory
    maker.close()


def executions(app: Flask, **filters: str) -> list[dict]:
    response = app.test_client().get("/api/executions", query_string=filters, headers={"X-Test-User": "admin"})
    assert response.status_code == 200, response.data
    return response.json["items"]


def write(app: Flask, name: str, text: str) -> None:
    (app.config["project"] / "functions" / name).write_text(textwrap.dedent(text))


def test_hello_in_python_and_node(fn_app: FnApp) -> None:
    app = fn_app({"hello.py": HELLO_PY, "hellojs.js": HELLO_JS})
    c = app.test_client()
    for name in ("hello", "hellojs"):
        first = c.get(f"/api/functions/{name}")
        assert first.status_code == 200, first.data
        assert first.json == {"hello": "world"}
        again = c.post(f"/api/functions/{name}?name=alyx")
        assert again.json == {"hello": "alyx"} and again.headers["X-Alyx-Execution-Id"]
    runs = executions(app, function_id="hellojs")
    assert [r["status"] for r in runs] == ["success", "success"]
    assert runs[0]["logs"]["stdout"] == "hello from node POST\n"
    assert runs[0]["trigger_type"] == "http" and runs[0]["input"]["method"] == "POST"
    assert set(runs[0]["timings"]) == {"queue", "acquire", "init", "handler"}
    assert executions(app, function_id="hello")[1]["logs"]["stdout"] == "hello from python GET\n"


@pytest.mark.parametrize("source", [("echo.py", ECHO_PY), ("echo.js", ECHO_CJS)], ids=["python", "node-cjs"])
def test_request_and_response_mapping(fn_app: FnApp, source: tuple[str, str]) -> None:
    app = fn_app({source[0]: source[1]})
    c = app.test_client()
    r = c.put("/api/functions/echo/sub/path?a=1&b=two", json={"x": [1, 2]},
              headers={"X-Custom": "hi", "X-Test-User": "user", "Cookie": "session=not-for-functions"})
    assert r.status_code == 201, r.data
    assert r.headers["X-Echo"] == "yes" and r.mimetype == "application/json"
    body = r.json
    assert body["method"] == "PUT" and body["path"] == "/api/functions/echo/sub/path"
    assert body["query"] == {"a": "1", "b": "two"} and body["json"] == {"x": [1, 2]}
    assert body["header"] == "hi" and body["has_cookie"] is False
    assert body["auth"] == {"id": USER.id, "email": USER.email, "role": "user", "verified": True}
    raw = c.post("/api/functions/echo", data=b"plain text", content_type="text/plain")
    assert raw.json["body"] == "plain text" and raw.json["json"] is None and raw.json["auth"] is None


def test_text_send_and_status_codes(fn_app: FnApp) -> None:
    app = fn_app({
        "text.py": "def handler(req, res):\n    return res.text('made', 418)\n",
        "send.js": "export default (req, res) => res.status(404).send('<b>nope</b>');\n",
        "plain.py": "def handler(req, res):\n    return {'returned': True}\n",
        "empty.js": "export default async () => {};\n",
    })
    c = app.test_client()
    r = c.get("/api/functions/text")
    assert (r.status_code, r.data, r.mimetype) == (418, b"made", "text/plain")
    r = c.get("/api/functions/send")
    assert (r.status_code, r.data, r.mimetype) == (404, b"<b>nope</b>", "text/html")
    assert c.get("/api/functions/plain").json == {"returned": True}
    assert c.get("/api/functions/empty").status_code == 204


def test_folder_function_with_manifest_env_and_isolation(fn_app: FnApp, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, tier: str) -> None:
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("host secret")
    monkeypatch.setenv("ALYX_TEST_SERVER_SECRET", "do-not-leak")
    monkeypatch.setenv("ALYX_TEST_PUBLIC", "public-value")
    app = fn_app({
        "envpy/manifest.yaml": "env:\n  API_URL: https://example.com/${ALYX_TEST_PUBLIC}\n  MODE: test\n",
        "envpy/index.py": f'''
            import os
            from helper import shout

            def handler(req, res):
                try:
                    host = open({str(secret_file)!r}).read()
                except OSError as exc:
                    host = "denied: " + type(exc).__name__
                return res.json({{"env": req.env, "environ": dict(os.environ), "host": host, "shout": shout("x")}})
            ''',
        "envpy/helper.py": "def shout(s):\n    return s.upper()\n",
        "envjs/manifest.yaml": "runtime: node\nenv:\n  API_URL: ${ALYX_TEST_PUBLIC}\n",
        "envjs/index.js": "const fs = require('fs');\nmodule.exports = async (req, res) => res.json({ env: req.env, "
                          "environ: process.env, host: (() => { try { return fs.readFileSync("
                          f"{str(secret_file)!r}, 'utf8'); }} catch (e) {{ return 'denied: ' + e.code; }} }})() }});\n",
    })
    c = app.test_client()
    py = c.get("/api/functions/envpy").json
    assert py["env"] == {"API_URL": "https://example.com/public-value", "MODE": "test"} and py["shout"] == "X"
    js = c.get("/api/functions/envjs").json
    assert js["env"] == {"API_URL": "public-value"}
    for seen in (py, js):
        assert "do-not-leak" not in str(seen["environ"]) and SECRET not in str(seen["environ"])
        assert not any(k.startswith("ALYX_") for k in seen["environ"])
        if tier != "process":  # the process tier is for development: same user, same files
            assert seen["host"].startswith("denied"), seen["host"]


def test_timeout_gives_504_and_replaces_the_sandbox(fn_app: FnApp) -> None:
    app = fn_app({
        "slow/manifest.yaml": "timeout: 1\n",
        "slow/index.py": '''
            import os, time
            def handler(req, res):
                if req.query.get("sleep"):
                    time.sleep(float(req.query["sleep"]))
                return res.json({"pid": os.getpid()})
            ''',
    })
    c = app.test_client()
    first = c.get("/api/functions/slow")
    assert first.status_code == 200
    r = c.get("/api/functions/slow?sleep=30")
    assert r.status_code == 504, r.data
    assert r.json["error"]["code"] == "function_timeout" and r.json["error"]["details"]["phase"] == "handler"
    after = c.get("/api/functions/slow")
    assert after.status_code == 200
    runs = executions(app, function_id="slow")
    assert [r["status"] for r in runs] == ["success", "timeout", "success"]
    assert runs[0]["sandbox"] != runs[1]["sandbox"] and runs[1]["sandbox"] == runs[2]["sandbox"]
    assert len(app.extensions["alyx"].functions.manager.stats()["functions"]["slow"]["instances"]) == 1


@pytest.mark.parametrize("runtime", ["python", "node", "go"])
def test_memory_limit_is_reported_as_such(fn_app: FnApp, runtime: str) -> None:
    code = {
        "python": ("index.py", "def handler(req, res):\n    hog = bytearray(600 * 1024 * 1024)\n"
                               "    hog[::4096] = b'x' * len(hog[::4096])\n    return res.json({'size': len(hog)})\n"),
        "node": ("index.js", "module.exports = async (req, res) => { const hog = [];\n"
                             "  while (true) hog.push(new Array(1e6).fill(Math.random())); };\n"),
        "go": ("main.go", 'package main\nimport ("net/http"; "github.com/watzon/alyx/pkg/runtime")\n'
                          'func Handle(w http.ResponseWriter, r *http.Request) {\n\thog := make([]byte, 600<<20)\n'
                          '\tfor i := 0; i < len(hog); i += 4096 {\n\t\thog[i] = 1\n\t}\n'
                          '\truntime.JSON(w, 200, map[string]int{"size": len(hog)})\n}\n'),
    }[runtime]
    app = fn_app({"hog/manifest.yaml": "memory: 64\ntimeout: 20\n", f"hog/{code[0]}": code[1],
                  "ok.py": "def handler(req, res):\n    return res.json({'ok': True})\n"})
    c = app.test_client()
    r = c.get("/api/functions/hog")
    assert r.status_code == 500, r.data
    assert r.json["error"]["code"] == "memory_limit_exceeded", r.json
    assert executions(app, function_id="hog")[0]["status"] == "memory_limit"
    assert c.get("/api/functions/ok").json == {"ok": True}


@pytest.mark.parametrize("source", [
    ("crash.py", "import os\ndef handler(req, res):\n    if req.query.get('exit'):\n        os._exit(3)\n"
                 "    return res.json({'pid': os.getpid()})\n"),
    ("crash.js", "module.exports = (req, res) => { if (req.query.exit) process.exit(3);"
                 " return res.json({ pid: process.pid }); };\n"),
    ("crash.go", 'package main\nimport ("net/http"; "os"; "github.com/watzon/alyx/pkg/runtime")\n'
                 'func Handle(w http.ResponseWriter, r *http.Request) {\n\tif r.URL.Query().Get("exit") != "" {\n'
                 '\t\tos.Exit(3)\n\t}\n\truntime.JSON(w, 200, map[string]int{"pid": os.Getpid()})\n}\n'),
], ids=["python", "node", "go"])
def test_crash_is_reported_and_the_runtime_replaced(fn_app: FnApp, source: tuple[str, str]) -> None:
    app = fn_app({source[0]: source[1]})
    c = app.test_client()
    assert c.get("/api/functions/crash").status_code == 200
    r = c.get("/api/functions/crash?exit=1")
    assert r.status_code == 502, r.data
    assert r.json["error"]["code"] == "function_crashed" and r.json["error"]["details"]["exit_code"] == 3
    assert c.get("/api/functions/crash").status_code == 200
    assert [e["status"] for e in executions(app, function_id="crash")] == ["success", "crashed", "success"]


@pytest.mark.parametrize("ext", ["py", "js"])
def test_edits_reload_and_syntax_errors_are_not_hidden(fn_app: FnApp, ext: str) -> None:
    v1 = {"py": "def handler(req, res):\n    return res.text('v1')\n",
          "js": "export default (req, res) => res.text('v1');\n"}[ext]
    v2 = {"py": "def handler(req, res):\n    return res.text('v2')\n",
          "js": "export default (req, res) => res.text('v2');\n"}[ext]
    broken = {"py": "def handler(req, res)\n    return res.text('v3')\n",
              "js": "export default (req, res) => { res.text('v3');\n"}[ext]
    app = fn_app({f"live.{ext}": v1})
    c = app.test_client()
    assert c.get("/api/functions/live").data == b"v1"
    write(app, f"live.{ext}", v2)
    assert c.get("/api/functions/live").data == b"v2"
    write(app, f"live.{ext}", broken)
    r = c.get("/api/functions/live")
    assert r.status_code == 500 and r.json["error"]["code"] == "function_load_error", r.data
    assert "SyntaxError" in r.json["error"]["message"]
    if ext == "py":
        assert r.json["error"]["details"]["line"] == 1
    again = c.get("/api/functions/live")
    assert again.status_code == 500 and again.json["error"]["code"] == "function_load_error"
    logged = executions(app, function_id="live", status="load_error")
    assert len(logged) == 2 and "SyntaxError" in logged[-1]["logs"]["stderr"]
    write(app, f"live.{ext}", v1.replace("v1", "v4"))
    assert c.get("/api/functions/live").data == b"v4"


def test_the_watcher_switches_versions_before_the_next_call(fn_app: FnApp) -> None:
    import time

    app = fn_app({"w/manifest.yaml": "min_warm: 1\n",
                  "w/index.py": "def handler(req, res):\n    return res.text('v1')\n"})
    c = app.test_client()
    assert c.get("/api/functions/w").data == b"v1"
    manager = app.extensions["alyx"].functions.manager
    old = manager.stats()["functions"]["w"]["version"]
    write(app, "w/index.py", "def handler(req, res):\n    return res.text('v2')\n")
    deadline = time.monotonic() + 60
    while True:  # no call is made: only the watcher can switch the version and warm it
        pool = manager.stats()["functions"]["w"]
        if pool["version"] != old and pool["instances"]:
            break
        assert time.monotonic() < deadline, "the watcher did not warm the new version"
        time.sleep(0.05)
    assert c.get("/api/functions/w").data == b"v2"
    assert executions(app, function_id="w")[0]["timings"]["init"] == 0  # it was bound before the call


def test_handler_errors_and_log_capping(fn_app: FnApp) -> None:
    app = fn_app({
        "boom.py": "def handler(req, res):\n    raise ValueError('nope')\n",
        "chatty.js": "export default (req, res) => { for (let i = 0; i < 3000; i++) console.log('x'.repeat(99));"
                     " return res.text('done'); };\n",
    })
    c = app.test_client()
    r = c.get("/api/functions/boom")
    assert r.status_code == 500 and r.json["error"]["code"] == "function_error"
    assert r.json["error"]["message"] == "ValueError: nope" and r.json["error"]["details"]["execution_id"]
    run = executions(app, function_id="boom")[0]
    assert run["status"] == "error" and "Traceback" in run["logs"]["stderr"]
    assert run["error"]["code"] == "function_error"
    assert c.get("/api/functions/chatty").data == b"done"
    stdout = executions(app, function_id="chatty")[0]["logs"]["stdout"]
    assert stdout.startswith("x" * 99 + "\n") and stdout.endswith("more bytes truncated]")


def test_queueing_beyond_max_instances_shares_one_sandbox(fn_app: FnApp) -> None:
    app = fn_app({
        "one/manifest.yaml": "max_instances: 1\nconcurrency: 1\ntimeout: 30\n",
        "one/index.py": "import time\ndef handler(req, res):\n    time.sleep(0.2)\n    return res.json({'ok': True})\n",
    })
    statuses: list[int] = []

    def call() -> None:
        statuses.append(app.test_client().get("/api/functions/one").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    runs = executions(app, function_id="one")
    assert len({r["sandbox"] for r in runs}) == 1
    assert sum(1 for r in runs if r["timings"]["queue"] > 0) >= 3  # they waited for the one instance
    assert sum(1 for r in runs if r["timings"]["init"] > 0) == 1  # concurrent first calls shared one start


def test_invoke_rule_and_executions_filters(fn_app: FnApp) -> None:
    app = fn_app({
        "members/manifest.yaml": "rules:\n  invoke: \"auth != null && request.method == 'POST'\"\n",
        "members/index.py": "def handler(req, res):\n    return res.json({'id': req.auth['id']})\n",
    })
    c = app.test_client()
    assert c.post("/api/functions/members").status_code == 401
    assert c.get("/api/functions/members", headers={"X-Test-User": "user"}).status_code == 403
    assert c.post("/api/functions/members", headers={"X-Test-User": "user"}).json == {"id": USER.id}
    assert c.get("/api/executions").status_code == 401
    assert c.get("/api/executions", headers={"X-Test-User": "user"}).status_code == 403
    assert [r["status"] for r in executions(app, function_id="members")] == ["success", "denied", "denied"]
    assert len(executions(app, status="success", trigger_type="http")) == 1
    assert len(executions(app, limit="2")) == 2
    assert executions(app, trigger_type="schedule") == []
    bad = c.get("/api/executions?limit=0", headers={"X-Test-User": "admin"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "bad_request"


def test_shutdown_removes_every_sandbox(fn_app: FnApp, tier: str) -> None:
    app = fn_app({"a.py": HELLO_PY, "b.js": HELLO_JS})
    c = app.test_client()
    assert c.get("/api/functions/a").status_code == 200 and c.get("/api/functions/b").status_code == 200
    functions = app.extensions["alyx"].functions
    sandboxes = functions.manager.sandboxes()
    assert len(sandboxes) >= 2
    app.extensions["alyx"].close()
    for sb in sandboxes:
        assert not sb.alive() and not sb.workdir.exists()
        proc = getattr(sb, "proc", None)  # a prewarmed sandbox may have been stopped before it launched
        if tier != "docker" and proc is not None:
            with pytest.raises(ProcessLookupError):
                os.kill(proc.pid, 0)
    if tier == "docker":
        import docker

        ids = [sb.container_id for sb in sandboxes]
        # sparse: no inspect per container, which races with containers other servers remove meanwhile
        assert docker.from_env().containers.list(all=True, sparse=True, filters={"id": ids}) == []


def test_unknown_and_misconfigured_functions(fn_app: FnApp) -> None:
    app = fn_app({"bad/manifest.yaml": "timeout: soon\n", "bad/index.py": "def handler(req, res):\n    pass\n"})
    c = app.test_client()
    assert c.get("/api/functions/missing").status_code == 404
    assert c.get("/api/functions/..%2Fetc").status_code == 404
    r = c.get("/api/functions/bad")
    assert r.status_code == 503 and r.json["error"]["code"] == "function_unavailable"
    assert r.json["error"]["message"].startswith("functions/bad/manifest.yaml:1: timeout: ")
    problems = c.get("/api/health", headers={"X-Test-User": "admin"}).json["functions"]["problems"]
    assert problems == [{"function": "bad", "message": r.json["error"]["message"]}]
    listed = c.get("/api/functions", headers={"X-Test-User": "admin"})
    assert listed.json == {"items": [{"name": "bad", "status": "unavailable", "error": r.json["error"]["message"]}]}
    assert c.get("/api/functions", headers={"X-Test-User": "user"}).status_code == 403
    assert c.get("/api/functions").status_code == 401


def test_health_reports_the_tier(fn_app: FnApp, tier: str) -> None:
    app = fn_app({})
    assert app.test_client().get("/api/health", headers={"X-Test-User": "admin"}).json["functions"]["sandbox"] == tier


def running(pid: int) -> bool:
    """A live process (not a zombie) with this pid."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    return set(descendants(pid))


def test_gunicorn_keeps_serving_during_slow_calls_and_cleans_up(live_server, tmp_path: Path, tier: str) -> None:
    import requests

    functions = tmp_path / "live0" / "functions"
    functions.mkdir(parents=True)
    (functions / "slow.py").write_text("import time\ndef handler(req, res):\n"
                                       "    time.sleep(float(req.query.get('sleep', '0')))\n"
                                       "    return res.json({'ok': True})\n")
    (functions / "hello.js").write_text(HELLO_JS)
    server = live_server(schema="collections: []\n", workers=1, env={"ALYX_FUNCTIONS_SANDBOX": tier})
    assert requests.get(server.url + "/api/functions/slow", timeout=30).json() == {"ok": True}
    assert requests.get(server.url + "/api/functions/hello", timeout=30).json() == {"hello": "world"}
    slow: list[int] = []
    caller = threading.Thread(target=lambda: slow.append(
        requests.get(server.url + "/api/functions/slow?sleep=3", timeout=30).status_code))
    caller.start()
    try:
        for _ in range(3):
            assert requests.get(server.url + "/api/health", timeout=30).status_code == 200
            assert requests.get(server.url + "/api/functions/hello", timeout=30).status_code == 200
        assert caller.is_alive()  # the slow call is still running while the rest was served
    finally:
        caller.join()
    assert slow == [200]
    pids = _descendants(server.proc.pid)
    containers = []
    if tier == "docker":
        import docker

        listed = docker.from_env().containers.list(all=True, sparse=True, filters={"label": "alyx.sandbox"})
        containers = [c for c in listed if int((c.attrs.get("Labels") or {}).get("alyx.pid", "0")) in pids]
        assert len(containers) >= 2
    else:
        assert len(pids) >= 3  # the worker and at least one sandbox per runtime
    server.stop()
    assert not any(running(pid) for pid in pids), "a sandbox process outlived the server"
    if containers:
        import docker

        left = docker.from_env().containers.list(all=True, sparse=True, filters={"id": [c.id for c in containers]})
        assert left == [], "a sandbox container outlived the server"


NOTES_SCHEMA = """
collections:
  - name: notes
    fields:
      - {name: text, type: string, required: true}
      - {name: owner, type: string}
    rules: {list: "true", view: "true", create: "auth != null", update: "false", delete: "false"}
"""
NOTES_PY = """
def handler(req, res):
    notes = req.alyx.collection("notes")
    try:
        made = notes.create({"text": req.query.get("text", "hi"), "owner": (req.auth or {}).get("id")})
    except Exception as exc:
        return res.json({"denied": exc.status, "code": exc.error.get("code")})
    return res.json({"created": notes.get(made["id"])["owner"], "count": notes.list()["totalItems"]})
"""
NOTES_JS = """
export default async function handler(req, res) {
  const notes = req.alyx.collection('notes');
  let made;
  try {
    made = await notes.create({ text: req.query.text || 'hi', owner: req.auth ? req.auth.id : null });
  } catch (err) {
    return res.json({ denied: err.status, code: err.error.code });
  }
  return res.json({ created: (await notes.get(made.id)).owner, count: (await notes.list()).totalItems });
}
"""

NOTES_GO = """package main

import (
	"errors"
	"net/http"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	ctx := runtime.Context(r)
	notes := ctx.Collections("notes")
	var owner any
	if ctx.Auth != nil {
		owner = ctx.Auth.ID
	}
	made, err := notes.Create(map[string]any{"text": "hi", "owner": owner})
	var denied *runtime.APIError
	if errors.As(err, &denied) {
		runtime.JSON(w, 200, map[string]any{"denied": denied.Status, "code": denied.Code})
		return
	} else if err != nil {
		panic(err)
	}
	got, err := notes.Get(made["id"].(string))
	if err != nil {
		panic(err)
	}
	list, err := notes.List(map[string]any{"filter": map[string]any{"owner": owner}, "perPage": 50})
	if err != nil {
		panic(err)
	}
	runtime.JSON(w, 200, map[string]any{"created": got["owner"], "count": list.TotalItems})
}
"""


@pytest.mark.parametrize("source", [("notes.py", NOTES_PY), ("notes.js", NOTES_JS), ("notes.go", NOTES_GO)],
                         ids=["python", "node", "go"])
def test_functions_call_the_api_back_as_their_caller(fn_app: FnApp, source: tuple[str, str]) -> None:
    app = fn_app({source[0]: source[1]}, schema=NOTES_SCHEMA)
    c = app.test_client()
    assert c.get("/api/functions/notes").json == {"denied": 403, "code": "forbidden"}  # anonymous caller
    assert c.get("/api/functions/notes", headers={"X-Test-User": "user"}).json == {"created": USER.id, "count": 1}
    assert c.get("/api/functions/notes", headers={"X-Test-User": "user"}).json == {"created": USER.id, "count": 2}
    assert c.get("/api/functions/notes").json["denied"] == 403  # each call is its caller, nothing carries over


def test_a_server_killed_with_sigkill_leaves_no_sandbox(live_server, tmp_path: Path, tier: str) -> None:
    import signal
    import time

    import requests

    functions = tmp_path / "live0" / "functions"
    functions.mkdir(parents=True)
    (functions / "a.py").write_text(HELLO_PY)
    (functions / "b.js").write_text(HELLO_JS)
    server = live_server(schema="collections: []\n", workers=1, env={"ALYX_FUNCTIONS_SANDBOX": tier})
    for name in ("a", "b"):
        assert requests.get(f"{server.url}/api/functions/{name}", timeout=30).status_code == 200
    pids = _descendants(server.proc.pid) | {server.proc.pid}
    gunicorn = [pid for pid in pids if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    sandboxes = pids - set(gunicorn)
    containers = []
    if tier == "docker":
        import docker

        listed = docker.from_env().containers.list(all=True, sparse=True, filters={"label": "alyx.sandbox"})
        containers = [c.id for c in listed
                      if int((c.attrs.get("Labels") or {}).get("alyx.pid", "0")) in pids]
        assert len(containers) >= 2
    else:
        assert len(sandboxes) >= 2
    for pid in gunicorn:
        os.kill(pid, signal.SIGKILL)
    server.proc.wait(timeout=30)

    deadline = time.monotonic() + 60
    while any(running(pid) for pid in gunicorn):
        assert time.monotonic() < deadline, "gunicorn survived SIGKILL"
        time.sleep(0.05)
    if tier == "docker":  # containers cannot notice; the next server on this host removes them
        from alyx.sandbox.docker_tier import DockerTier

        DockerTier()
        import docker

        assert docker.from_env().containers.list(all=True, sparse=True, filters={"id": containers}) == []
        return
    deadline = time.monotonic() + 60
    while any(running(pid) for pid in sandboxes):
        assert time.monotonic() < deadline, "sandbox processes outlived a killed server"
        time.sleep(0.05)


CATALOGUED = {
    "report/manifest.yaml": """\
runtime: python
timeout: 2s
memory: 64MB
max_instances: 2
retries: 1
run_as: system
rules: {invoke: "auth != null"}
hooks:
  - {type: database, source: posts, action: insert, mode: async}
  - {type: webhook, verification: {type: hmac-sha256, header: X-Sig, secret: very-secret-value}}
schedules:
  - {name: nightly, type: cron, expression: "0 3 * * *", timezone: Europe/Berlin}
""",
    "report/index.py": "def handler(req, res):\n    return res.json({})\n",
    "plain.py": "def handler(req, res):\n    return res.json({})\n",
}


def test_the_catalog_lists_tier_limits_hooks_and_schedules_without_secrets(tmp_path: Path) -> None:
    maker = AppMaker(tmp_path, {"ALYX_FUNCTIONS_SANDBOX": "process", "ALYX_AUTH_SECRET": SECRET}, test_users=True)
    try:
        app = maker("collections:\n  - {name: posts, fields: [{name: title, type: string}]}\n", files=CATALOGUED)
        r = app.test_client().get("/api/functions", headers={"X-Test-User": "admin"})
    finally:
        maker.close()
    assert r.status_code == 200 and "very-secret-value" not in r.get_data(as_text=True)
    plain, report = r.json["items"]
    assert plain["name"] == "plain" and plain["tier"] == "process" and plain["hooks"]["http"] is True
    assert plain["limits"]["timeout"] == 10.0 and plain["schedules"] == [] and plain["invoke_rule"] is None
    assert report["limits"] == {"timeout": 2.0, "memory": 64, "cpu": 1.0, "max_instances": 2, "concurrency": 1,
                                "min_warm": 0, "network": False}
    assert report["invoke_rule"] == "auth != null"
    hooks = report["hooks"]
    assert hooks["http"] is False and hooks["run_as"] == "system" and hooks["retries"] == 1
    assert hooks["database"] == [{"collection": "posts", "actions": ["create"], "mode": "async"}]
    assert hooks["webhook"]["verification"] == "hmac-sha256" and hooks["webhook"]["header"] == "X-Sig"
    assert "secret" not in hooks["webhook"]
    assert report["schedules"] == [{"name": "nightly", "type": "cron", "expression": "0 3 * * *",
                                    "timezone": "Europe/Berlin", "enabled": True}]
