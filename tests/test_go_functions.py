"""Go functions end to end through the Flask app, on every sandbox tier: the README's hello (one file and
a folder), the context API as the caller, compile errors and hot reload, a database hook and a schedule.

Offline: the functions use the standard library and the runtime package shipped in runtimes/go. The
first build on a machine compiles Go's standard library into the cache (a minute or two); later
builds of a new version take about a second, and a known version none.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import USER
from tests.harness import eventually
from tests.test_functions import NOTES_GO, NOTES_SCHEMA, FnApp, executions, fn_app, tier, write  # noqa: F401 - fixtures

README_HELLO = """package main

import (
	"net/http"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	runtime.JSON(w, 200, map[string]string{"message": "Hello from Go!"})
}
"""
GREET_MAIN = """package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	ctx := runtime.Context(r)
	var in struct{ Name string `json:"name"` }
	_ = ctx.BindInput(&in)
	fmt.Println("greeting", in.Name)
	w.Header().Set("X-Greeting", "yes")
	runtime.JSON(w, 201, map[string]any{"text": shout(os.Getenv("GREETING") + " " + in.Name),
		"env": ctx.Env["GREETING"], "auth": ctx.Auth, "trigger": ctx.Trigger, "path": r.URL.Path,
		"has_secret": os.Getenv("ALYX_SECRET") != "", "cookie": r.Header.Get("Cookie")})
}
"""
GREET_HELPER = """package main

import "strings"

func shout(s string) string { return strings.ToUpper(s) }
"""
TOOLS_GO = """package main

import (
	"net/http"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	ctx := runtime.Context(r)
	answer, err := ctx.Functions.Invoke("echo", map[string]any{"x": 1})
	if err != nil {
		panic(err)
	}
	published, err := ctx.Events.Publish(runtime.Event{Type: "custom", Source: "go", Action: "ping",
		Payload: map[string]any{"n": 1}})
	if err != nil {
		panic(err)
	}
	deleted, err := ctx.Collections("notes").DeleteMany(map[string]any{"text": "hi"})
	if err != nil {
		panic(err)
	}
	runtime.JSON(w, 200, map[string]any{"answer": answer, "delivered": published.DeliveredTo, "deleted": deleted})
}
"""
ECHO_PY = "def handler(req, res):\n    return res.json({'input': req.input, 'auth': req.auth})\n"
LIVE = """package main

import (
	"net/http"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	runtime.JSON(w, 200, map[string]string{"version": "%s"})
}
"""
BROKEN = LIVE.replace('map[string]string{"version": "%s"}', "nope")
HOOKED = """package main

import (
	"fmt"
	"net/http"

	"github.com/watzon/alyx/pkg/runtime"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	ctx := runtime.Context(r)
	who := "anonymous"
	if ctx.Auth != nil {
		who = ctx.Auth.ID
	}
	fmt.Printf("%s %s %s\\n", ctx.Trigger, who, string(ctx.Input))
	runtime.JSON(w, 200, map[string]bool{"ok": true})
}
"""
ADMIN = {"X-Test-User": "admin"}


def test_readme_hello_as_one_file_and_as_a_folder(fn_app: FnApp) -> None:  # noqa: F811 - fixture
    app = fn_app({"hello.go": README_HELLO,
                  "greet/manifest.yaml": "runtime: go\ntimeout: 5\nenv:\n  GREETING: hello\n",
                  "greet/main.go": GREET_MAIN, "greet/helper.go": GREET_HELPER})
    c = app.test_client()
    first = c.get("/api/functions/hello")
    assert first.status_code == 200, first.data
    assert first.json == {"message": "Hello from Go!"} and first.headers["Content-Type"] == "application/json"
    assert c.post("/api/functions/hello").json == {"message": "Hello from Go!"}
    r = c.post("/api/functions/greet/extra", json={"name": "alyx"},
               headers={"X-Test-User": "user", "Cookie": "session=secret"})
    assert r.status_code == 201, r.data
    assert r.headers["X-Greeting"] == "yes"
    assert r.json == {"text": "HELLO ALYX", "env": "hello", "trigger": "http", "path": "/api/functions/greet/extra",
                      "has_secret": False, "cookie": "",
                      "auth": {"id": USER.id, "email": USER.email, "role": "user", "verified": True}}
    (run,) = executions(app, function_id="greet")
    assert run["status"] == "success" and run["logs"]["stdout"] == "greeting alyx\n"
    assert [e["status"] for e in executions(app, function_id="hello")] == ["success", "success"]


def test_the_context_api_calls_back_as_the_caller(fn_app: FnApp) -> None:  # noqa: F811 - fixture
    app = fn_app({"notes.go": NOTES_GO, "tools.go": TOOLS_GO, "echo.py": ECHO_PY}, schema=NOTES_SCHEMA)
    c = app.test_client()
    assert c.get("/api/functions/notes").json == {"denied": 403, "code": "forbidden"}  # anonymous caller
    signed_in = {"X-Test-User": "user"}
    assert c.get("/api/functions/notes", headers=signed_in).json == {"created": USER.id, "count": 1}
    assert c.get("/api/functions/notes", headers=signed_in).json == {"created": USER.id, "count": 2}
    tools = c.get("/api/functions/tools", headers=signed_in)
    assert tools.status_code == 200, tools.data
    assert tools.json["answer"] == {"input": {"x": 1}, "auth": tools.json["answer"]["auth"]}
    assert tools.json["answer"]["auth"]["id"] == USER.id  # the invoked function ran as the same caller
    assert tools.json["delivered"] == [] and tools.json["deleted"] == 0  # the delete rule is "false"
    assert c.get("/api/collections/notes").json["totalItems"] == 2


def test_compile_errors_are_shown_and_the_old_version_is_not_served(fn_app: FnApp) -> None:  # noqa: F811
    app = fn_app({"live.go": LIVE % "v1"})
    c = app.test_client()
    assert c.get("/api/functions/live").json == {"version": "v1"}
    write(app, "live.go", LIVE % "v2")
    assert c.get("/api/functions/live").json == {"version": "v2"}  # hot reload: the next call, rebuilt
    write(app, "live.go", BROKEN)
    r = c.get("/api/functions/live")
    assert r.status_code == 500 and r.json["error"]["code"] == "function_load_error", r.data
    error = r.json["error"]
    assert "failed to load: compile error: live.go:10:23: undefined: nope" in error["message"]
    assert (error["details"]["file"], error["details"]["line"]) == ("live.go", 10)
    again = c.get("/api/functions/live")
    assert again.status_code == 500 and again.json["error"]["code"] == "function_load_error"
    logged = executions(app, function_id="live", status="load_error")
    assert len(logged) == 2 and "undefined: nope" in logged[-1]["logs"]["stderr"]
    write(app, "live.go", LIVE % "v4")
    assert c.get("/api/functions/live").json == {"version": "v4"}
    write(app, "live.go", LIVE.replace("func Handle", "func Other") % "v5")
    missing = c.get("/api/functions/live").json["error"]
    assert missing["code"] == "function_load_error" and "defines no func Handle(" in missing["message"]


def test_panics_are_function_errors_and_the_sandbox_stays(fn_app: FnApp) -> None:  # noqa: F811 - fixture
    source = LIVE.replace('runtime.JSON(w, 200, map[string]string{"version": "%s"})',
                          'if r.URL.Query().Get("boom") != "" {\n\t\tpanic("kaboom")\n\t}\n\t'
                          'runtime.JSON(w, 200, map[string]int{"pid": os.Getpid()})').replace(
        '"net/http"', '"net/http"\n\t"os"')
    app = fn_app({"boom.go": source})
    c = app.test_client()
    pid = c.get("/api/functions/boom").json["pid"]
    r = c.get("/api/functions/boom?boom=1")
    assert r.status_code == 500 and r.json["error"] == {"code": "function_error", "message": "panic: kaboom",
                                                        "details": r.json["error"]["details"]}
    assert c.get("/api/functions/boom").json["pid"] == pid
    failed = executions(app, function_id="boom", status="error")[0]
    assert "panic: kaboom" in failed["logs"]["stderr"] and "goroutine" in failed["logs"]["stderr"]


def test_a_database_hook_and_a_schedule_run_go(fn_app: FnApp) -> None:  # noqa: F811 - fixture
    manifest = ("runtime: go\nhooks:\n  - {type: database, source: notes, action: insert}\n"
                "schedules:\n  - {name: tick, type: interval, expression: 1h, config: {input: {kind: tick}}}\n")
    app = fn_app({"hooked/manifest.yaml": manifest, "hooked/main.go": HOOKED}, schema=NOTES_SCHEMA)
    c = app.test_client()
    events = app.extensions["alyx"].events
    made = c.post("/api/collections/notes", json={"text": "from go"}, headers={"X-Test-User": "user"})
    assert made.status_code == 201, made.data

    def ran(trigger: str) -> list[dict]:
        events.run_due_jobs()
        return [e for e in executions(app, function_id="hooked") if e["trigger_type"] == trigger]

    (hook,) = eventually(lambda: ran("database"), what="the database hook")
    assert hook["status"] == "success", hook
    trigger, who, payload = hook["logs"]["stdout"].strip().split(" ", 2)
    assert trigger == "database" and json.loads(payload)["document"]["text"] == "from go"
    assert who == "user00000000001"  # ctx.Auth of a database hook: the writer
    events.scheduler.tick()
    assert c.post("/api/schedules/hooked/tick/run", headers=ADMIN).status_code == 202
    (scheduled,) = eventually(lambda: ran("schedule"), what="the schedule run")
    assert scheduled["status"] == "success" and scheduled["input"] == {"kind": "tick"}
    assert scheduled["logs"]["stdout"] == 'schedule anonymous {"kind": "tick"}\n'  # a schedule has no caller


def test_dependencies_without_a_module_proxy_are_refused_clearly(fn_app: FnApp,  # noqa: F811 - fixture
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPROXY", "off")  # no network in tests: what a server without a proxy sees
    app = fn_app({"dep/go.mod": "module example.com/dep\n\ngo 1.19\n\nrequire github.com/google/uuid v1.3.0\n",
                  "dep/main.go": 'package main\nimport ("net/http"; "github.com/google/uuid"; '
                                 '"github.com/watzon/alyx/pkg/runtime")\nfunc Handle(w http.ResponseWriter, '
                                 'r *http.Request) {\n\truntime.JSON(w, 200, map[string]string{\n'
                                 '\t\t"id": uuid.NewString()})\n}\n'})
    r = app.test_client().get("/api/functions/dep")
    assert r.status_code == 500 and r.json["error"]["code"] == "function_load_error", r.data
    message = r.json["error"]["message"]
    assert "the dependencies in go.mod could not be fetched: no Go module proxy is reachable" in message
    assert "GOPROXY=off" in message
