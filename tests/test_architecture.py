"""The layering docs/architecture.md promises, checked on the source: no import cycle in alyx/, who
may import whom, and modules small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ALYX = Path(__file__).resolve().parent.parent / "alyx"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ALYX.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ALYX.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The modules `name` imports (alyx ones resolved to the module, others as their top-level name);
    `TYPE_CHECKING` blocks are left out, since they never run."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
            visit([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    visit(tree.body)
    return {resolve(imported) for imported in found}


def resolve(imported: str) -> str:
    if imported in MODULES:
        return imported
    if imported.startswith("alyx."):
        parent = imported.rpartition(".")[0]
        return parent if parent in MODULES else imported
    return imported.split(".")[0]


def alyx_imports(name: str) -> set[str]:
    return {m for m in imports_of(name) if m in MODULES and m != name}


def test_no_import_cycle_in_alyx() -> None:
    """Imports inside functions count too: they were how cycles were held apart."""
    graph = {name: alyx_imports(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if state.get(nxt) is None:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small_enough_to_read(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_sandbox_works_without_flask_and_peewee() -> None:
    """alyx/sandbox/ and every alyx module it reaches, transitively."""
    seen: set[str] = set()
    todo = [name for name in MODULES if name == "alyx.sandbox" or name.startswith("alyx.sandbox.")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        web = {m for m in imports_of(name) if m in {"flask", "peewee", "flask_sock", "werkzeug"}}
        assert not web, f"{name} (reached from alyx/sandbox/) imports {web}"
        todo += alyx_imports(name)


def test_services_never_import_blueprints_or_flask() -> None:
    for name in MODULES:
        web = {"alyx.app", "alyx.http", "alyx.multipart", "alyx.devserver", "alyx.cli"}
        if name.startswith("alyx.blueprints") or name in web:
            continue
        web = {m for m in imports_of(name) if m.startswith("alyx.blueprints") or m in {"flask", "flask_sock"}}
        assert not web, f"{name} imports {web}"


def test_blueprints_hold_no_sql() -> None:
    for name in MODULES:
        if name.startswith("alyx.blueprints"):
            text = MODULES[name].read_text()
            assert "peewee" not in imports_of(name), name
            assert "execute_sql" not in text and "SELECT " not in text, name


def test_nothing_imports_another_modules_private_names() -> None:
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alyx"):
                offenders += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


LAYERS = [  # docs/architecture.md "What each package may import", lowest first
    ("generic", {"alyx", "alyx.errors", "alyx.clock", "alyx.background", "alyx.units", "alyx.yamlfile",
                 "alyx.signatures", "alyx.schedules", "alyx.ratelimit", "alyx.cel", "alyx.realtime_client",
                 "alyx.resources", "alyx.object_filter", "alyx.thumbs",
                 "alyx.accesslog", "alyx.proxies", "alyx.gunicorn_response", "alyx.gunicorn_worker"}),
    ("sandbox", {"alyx.sandbox"}),
    ("definitions", {"alyx.config", "alyx.schema", "alyx.fields", "alyx.validation", "alyx.models", "alyx.db",
                     "alyx.db_pool", "alyx.db_checkpoint", "alyx.system_migrations", "alyx.migrations",
                     "alyx.conflicts", "alyx.storage", "alyx.record_files"}),
    ("services", {"alyx.query", "alyx.list_plans", "alyx.rules", "alyx.collection", "alyx.records", "alyx.batch",
                  "alyx.auth", "alyx.passwords", "alyx.signing_keys",
                  "alyx.login_guard", "alyx.oauth", "alyx.mail", "alyx.account_flows", "alyx.file_access",
                  "alyx.file_sweep", "alyx.realtime",
                  "alyx.executions", "alyx.callback",
                  "alyx.functions", "alyx.jobs", "alyx.leases", "alyx.scheduler", "alyx.events", "alyx.status"}),
    ("wiring", {"alyx.services"}),
    ("web", {"alyx.http", "alyx.multipart", "alyx.blueprints", "alyx.app", "alyx.devserver", "alyx.cli",
             "alyx.__main__", "alyx.openapi", "alyx.generate"}),
]


def layer_of(name: str) -> int:
    for number, (_, members) in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members if m != "alyx") or name == "alyx":
            return number
    raise AssertionError(f"{name} is in no layer of docs/architecture.md")


def test_modules_import_only_their_layer_or_below() -> None:
    wrong = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
             for name in MODULES for dep in alyx_imports(name) if layer_of(dep) > layer_of(name)]
    assert wrong == []
