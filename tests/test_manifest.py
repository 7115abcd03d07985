"""alyx.sandbox.manifest: the one manifest parser (durations, sizes, hooks, schedules) with file:line errors,
and how the registry reports a broken manifest (503 function_unavailable, logged once, listed)."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from alyx.errors import AlyxError, ConfigError
from alyx.sandbox import FunctionRegistry
from alyx.sandbox.manifest import DatabaseHook, EventHook, FunctionHooks, Limits, parse_manifest

PATH = "functions/x/manifest.yaml"


def manifest(text: str, environ: dict[str, str] | None = None):
    return parse_manifest("x", textwrap.dedent(text), PATH, environ or {})


def problem(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        manifest(text)
    return str(info.value)


@pytest.mark.parametrize("timeout, seconds", [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("3", 3.0), ("2.5", 2.5),
                                              ("'1h30m'", 5400.0)])
def test_timeouts_are_durations(timeout: str, seconds: float) -> None:
    assert manifest(f"timeout: {timeout}\n").limits.timeout == seconds


@pytest.mark.parametrize("memory, megabytes", [("128MB", 128), ("128m", 128), ("256M", 256), ("1G", 1024),
                                               ("64", 64), ("'512 MiB'", 512)])
def test_memory_is_a_size(memory: str, megabytes: int) -> None:
    assert manifest(f"memory: {memory}\n").limits.memory == megabytes


def test_defaults_env_rules_and_handler() -> None:
    empty = manifest("")
    assert empty.limits == Limits() and empty.env == {} and empty.invoke_rule is None and empty.handler == "handler"
    full = manifest("""
        runtime: node
        entry: main.js
        handler: run
        cpu: 0.5
        network: true
        env:
          URL: https://${HOST}/x
          EMPTY:
        rules:
          invoke: true
        retries: 2
        """, {"HOST": "example.com"})
    assert (full.runtime, full.entry, full.handler, full.limits.cpu, full.limits.network) == (
        "node", "main.js", "run", 0.5, True)
    assert full.env == {"URL": "https://example.com/x", "EMPTY": ""} and full.invoke_rule == "true"
    assert full.hooks.retries == 2 and full.hooks.function == "x"


def test_hooks_and_schedules() -> None:
    parsed = manifest("""
        hooks:
          - {type: database, source: posts, action: [insert, update], mode: sync}
          - {type: database, collection: notes}
          - type: webhook
            verification:
              header: X-Sig
              secret: ${SECRET}
              tolerance_seconds: 5m
          - {type: event, event: 'order.*'}
        schedules:
          - {name: nightly, expression: '0 3 * * *'}
        """, {"SECRET": "s3"}).hooks
    assert parsed.database == (DatabaseHook("posts", frozenset({"create", "update"}), "sync"),
                               DatabaseHook("notes", frozenset({"create", "update", "delete"}), "async"))
    assert parsed.webhook is not None and parsed.webhook.secret == "s3" and parsed.webhook.tolerance_seconds == 300
    assert parsed.webhook.algorithm == "hmac-sha256" and parsed.events == (EventHook("order.*", "*", "*"),)
    assert [s.key for s in parsed.schedules] == ["x/nightly"]


def test_webhooks_answer_at_once_unless_async() -> None:
    hook = manifest("hooks:\n  - {type: webhook}\n").hooks.webhook
    assert hook is not None and hook.mode == "sync" and hook.algorithm is None
    hook = manifest("hooks:\n  - type: webhook\n    mode: async\n    verification: {header: X-Sig, secret: s}\n"
                    ).hooks.webhook
    assert hook is not None and hook.mode == "async" and hook.header == "X-Sig"


def test_triggers_run_as_their_caller_unless_run_as_system() -> None:
    assert manifest("schedules:\n  - {name: a, type: interval, expression: 1h}\n").hooks.run_as == "caller"
    assert manifest("run_as: system\nhooks:\n  - {type: database, source: posts}\n").hooks.run_as == "system"


@pytest.mark.parametrize("text, expected", [
    ("runtime: python\n\ntimeout: soon\n", f"{PATH}:3: timeout: expected a duration"),
    ("timeout: 0\n", f"{PATH}:1: timeout: expected at least 0.01s"),
    ("timeout: true\n", f"{PATH}:1: timeout: expected a duration"),
    ("memory: lots\n", f"{PATH}:1: memory: expected a size"),
    ("memory: 16\n", f"{PATH}:1: memory: expected at least 32 MB"),
    ("max_instances: 1.5\n", f"{PATH}:1: max_instances: expected a whole number, got float 1.5"),
    ("cpu: fast\n", f"{PATH}:1: cpu: expected a number"),
    ("network: yes please\n", f"{PATH}:1: network: expected true or false"),
    ("runtime: ruby\n", f"{PATH}:1: runtime: expected python, node or go, got str 'ruby'"),
    ("name: x\ntimeuot: 1\n", f"{PATH}:2: top level: unknown key 'timeuot'"),
    ("env: [a]\n", f"{PATH}:1: env: expected a mapping"),
    ("rules:\n  list: 'true'\n", f"{PATH}:1: rules: may only hold 'invoke'"),
    ("rules:\n  invoke: [1]\n", f"{PATH}:2: rules.invoke: expected a CEL expression string"),
    ("retries: -1\n", f"{PATH}:1: retries: expected at least 0"),
    ("- 1\n", f"{PATH}: top level: expected a mapping, got a list"),
    ("timeout: 1\ntimeout: 2\n", f"{PATH}:2: not valid YAML: duplicate key 'timeout'"),
    ("hooks:\n  - type: database\n    source: posts\n    mode: fast\n",
     f"{PATH}:4: hooks[0].mode: expected async or sync"),
    ("hooks:\n  - type: database\n    source: posts\n    action: upsert\n",
     f"{PATH}:4: hooks[0].action: expected insert"),
    ("hooks:\n  - {type: database}\n", f"{PATH}:2: hooks[0]: source (the collection) is required"),
    ("hooks:\n  - type: queue\n", f"{PATH}:2: hooks[0].type: expected one of database, webhook, event"),
    ("hooks:\n  - {type: event, topic: x}\n", f"{PATH}:2: hooks[0]: unknown key 'topic'"),
    ("hooks:\n  - {type: webhook}\n  - {type: webhook}\n", f"{PATH}:3: hooks[1]: a function has at most one"),
    ("hooks:\n  - type: webhook\n    verification:\n      type: md5\n      header: X\n",
     f"{PATH}:4: hooks[0].verification.type: expected one of hmac-sha256, hmac-sha1"),
    ("hooks:\n  - type: webhook\n    verification:\n      secret: s\n",
     f"{PATH}:4: hooks[0].verification.header: the name of the signature header is required"),
    ("hooks:\n  - type: webhook\n    verification: strict\n", f"{PATH}:3: hooks[0].verification: expected a mapping"),
    ("hooks:\n  - type: webhook\n\n    mode: later\n",
     f"{PATH}:4: hooks[0].mode: expected sync or async, got str 'later'"),
    ("schedules:\n  - name: a\n    expression: 'not cron'\n", f"{PATH}:3: schedules[0]: 'not cron' is not a 5-field"),
    ("schedules:\n  - {name: a, type: interval, expression: 500ms}\n", f"{PATH}:2: schedules[0]: interval '500ms'"),
    ("schedules: daily\n", f"{PATH}:1: schedules: must be a list"),
    ("timeout: 1\nrun_as: root\n", f"{PATH}:2: run_as: expected caller or system, got str 'root'"),
])
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    assert problem(text).startswith(expected)


# -- the registry: a broken manifest is a 503, logged once, listed -----------------------------------
def write(functions: Path, name: str, manifest_text: str) -> None:
    (functions / name).mkdir(parents=True, exist_ok=True)
    (functions / name / "index.py").write_text("def handler(req, res):\n    return res.json({})\n")
    (functions / name / "manifest.yaml").write_text(manifest_text)


def test_a_broken_manifest_is_unavailable_logged_once_and_listed(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    functions = tmp_path / "functions"
    write(functions, "good", "timeout: 1s\nmemory: 128MB\n")
    write(functions, "bad", "runtime: python\ntimeout: soon\n")
    registry = FunctionRegistry(functions, {})
    assert registry.get("good").limits.timeout == 1.0
    caplog.set_level(logging.INFO, logger="alyx.functions")
    for _ in range(3):
        with pytest.raises(AlyxError) as info:
            registry.get("bad")
        assert (info.value.status, info.value.code) == (503, "function_unavailable")
        assert info.value.message.startswith("functions/bad/manifest.yaml:2: timeout: expected a duration")
    logged = [r.getMessage() for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert logged == [f"function bad cannot be loaded: {info.value.message}"]
    assert registry.problems() == {"bad": info.value.message}
    (functions / "bad" / "manifest.yaml").write_text("runtime: python\ntimeout: 2s\n")
    assert registry.get("bad").limits.timeout == 2.0 and registry.problems() == {}
    assert any("function bad loads again" in r.getMessage() for r in caplog.records)


def test_other_load_problems_are_unavailable_too(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    write(functions, "noentry", "entry: missing.py\n")
    (functions / "twice.py").write_text("")
    (functions / "twice.js").write_text("")
    registry = FunctionRegistry(functions, {})
    problems = registry.problems()
    assert problems["noentry"] == "functions/noentry/manifest.yaml: entry: the file missing.py does not exist"
    assert "more than one file defines the function 'twice'" in problems["twice"]
    with pytest.raises(AlyxError) as info:
        registry.get("missing")
    assert info.value.status == 404


# -- every entry of functions/ is a function, ignored on purpose, or reported ---------------------------
def test_what_alyx_cannot_run_is_reported_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "hello.go").write_text("package main\n")  # Go runs now: it is a function, not a problem
    (functions / "script.rb").write_text("puts 1\n")
    (functions / "typed.ts").write_text("export default () => 1\n")
    (functions / "Makefile").write_text("all:\n")
    (functions / "notes.txt").write_text("todo\n")
    (functions / "notes.py").write_text("def handler(req, res):\n    pass\n")  # notes.txt does not break it
    (functions / "my hook.py").write_text("def handler(req, res):\n    pass\n")
    (functions / "both.py").write_text("def handler(req, res):\n    pass\n")
    (functions / "both.go").write_text("package main\n")
    (functions / "helpers").mkdir()
    (functions / "helpers" / "util.py").write_text("X = 1\n")
    (functions / "gofolder").mkdir()
    (functions / "gofolder" / "main.go").write_text("package main\n")
    (functions / "empty").mkdir()
    write(functions, "gomanifest", "runtime: go\n")
    caplog.set_level(logging.INFO, logger="alyx.functions")
    registry = FunctionRegistry(functions, {})
    problems = registry.problems()
    assert problems == {
        "Makefile": "functions/Makefile: Alyx cannot run this file: a function is a .py, .js, .mjs, .cjs or .go file, "
                    "or a folder with index.py, index.js or main.go (and an optional manifest.yaml)",
        "both": "functions/: more than one file defines the function 'both': both.go, both.py",
        "empty": "functions/empty/: an empty folder; a function is a .py, .js, .mjs, .cjs or .go file, or a folder "
                 "with index.py, index.js or main.go (and an optional manifest.yaml)",
        "gomanifest": "functions/gomanifest/manifest.yaml: no index.py, index.js or main.go next to it",
        "helpers": "functions/helpers/: no manifest.yaml and no index file (index.py, main.py, index.js, index.mjs, "
                   "index.cjs, main.go), so Alyx does not know what to run",
        "my hook": "functions/my hook.py: 'my hook' is not a function name (letters, digits, '-' and '_', starting "
                   "with a letter or digit, at most 64 characters)",
        "notes.txt": "functions/notes.txt: Alyx cannot run this file: a function is a .py, .js, .mjs, .cjs or .go "
                     "file, or a folder with index.py, index.js or main.go (and an optional manifest.yaml)",
        "script.rb": "functions/script.rb: Alyx cannot run this file: a function is a .py, .js, .mjs, .cjs or .go "
                     "file, or a folder with index.py, index.js or main.go (and an optional manifest.yaml)",
        "typed": "functions/typed.ts: TypeScript is not run directly: compile it to .js (or .mjs)",
    }
    for name, reason in problems.items():
        with pytest.raises(AlyxError) as info:
            registry.get(name)
        assert (info.value.status, info.value.code, info.value.message) == (503, "function_unavailable", reason)
    logged = sorted(r.getMessage() for r in caplog.records if "cannot be loaded" in r.getMessage())
    assert logged == sorted(f"function {name} cannot be loaded: {reason}" for name, reason in problems.items())
    assert (registry.get("hello").runtime, registry.get("gofolder").entry) == ("go", "main.go")
    (functions / "hello.go").unlink()
    (functions / "hello.py").write_text("def handler(req, res):\n    pass\n")
    assert registry.get("hello").runtime == "python" and "hello" not in registry.problems()
    assert registry.get("notes").runtime == "python"


def test_what_users_keep_in_functions_is_ignored(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    write(functions, "real", "runtime: python\n")
    for folder in (".git", "__pycache__", "node_modules", "sdk", "_shared"):
        (functions / folder).mkdir()
        (functions / folder / "index.js").write_text("module.exports = 1\n")
    for file in (".env", ".DS_Store", "_util.py", "real.pyc", "README.md", "readme.txt", "LICENSE", "notes.md",
                 "package.json", "package-lock.json", "tsconfig.json", "requirements.txt", "types.d.ts", "LICENSE.txt",
                 "bundle.js.map"):
        (functions / file).write_text("")
    (functions / "real.py~").write_text("")  # an editor's backup of a function that moved into real/
    (functions / "real" / "helper.py").write_text("X = 1\n")  # a folder's own modules are part of it
    (functions / "readme-bot.py").write_text("def handler(req, res):\n    pass\n")  # only README itself is docs
    (functions / "real" / "__pycache__").mkdir()
    registry = FunctionRegistry(functions, {})
    assert registry.names() == ["readme-bot", "real"] and registry.problems() == {}
    assert registry.get("real").files == ("helper.py", "index.py", "manifest.yaml")
    write(functions, "sdk", "runtime: python\n")  # with a manifest, sdk/ is a function like any other
    assert registry.names() == ["readme-bot", "real", "sdk"]


def test_a_folder_with_an_index_file_runs_without_a_manifest(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    (functions / "plain").mkdir(parents=True)
    (functions / "plain" / "index.js").write_text("export default async (req, res) => res.json({})\n")
    (functions / "plain" / "lib.js").write_text("export const x = 1\n")
    spec = FunctionRegistry(functions, {}).get("plain")
    assert (spec.runtime, spec.entry, spec.esm, spec.limits) == ("node", "index.js", True, Limits())
    assert spec.files == ("index.js", "lib.js") and spec.hooks == FunctionHooks("plain")


def test_unrunnable_entries_reach_health_the_function_list_and_callers(tmp_path: Path, make_app,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alyx.functions")
    project = tmp_path / "project"
    (project / "functions" / "helpers").mkdir(parents=True)
    (project / "functions" / "helpers" / "util.py").write_text("X = 1\n")
    (project / "functions" / "hello.ts").write_text("export default () => 1\n")
    (project / "functions" / "README.md").write_text("# my functions\n")
    app = make_app(project=project)
    logged = [r.getMessage() for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert sorted(logged)[0].startswith("function hello cannot be loaded: functions/hello.ts: TypeScript is not run")
    assert len(logged) == 2  # at load (the app starting), once each: hello.ts and helpers/
    c = app.test_client()
    r = c.get("/api/functions/hello")
    assert r.status_code == 503 and r.json["error"]["code"] == "function_unavailable"
    assert r.json["error"]["message"].startswith("functions/hello.ts: TypeScript is not run directly")
    assert c.post("/api/webhooks/hello").status_code == 503
    helpers = c.get("/api/functions/helpers").json["error"]["message"]
    assert helpers.startswith("functions/helpers/: no manifest.yaml and no index file")
    assert c.get("/api/functions/README").status_code == 404  # ignored, not a function
    assert c.get("/api/health").json["functions"]["problems"] == [
        {"function": "hello", "message": r.json["error"]["message"]}, {"function": "helpers", "message": helpers}]
    assert app.extensions["alyx"].functions.catalog() == [  # GET /api/functions (admins)
        {"name": "hello", "status": "unavailable", "error": r.json["error"]["message"]},
        {"name": "helpers", "status": "unavailable", "error": helpers}]
