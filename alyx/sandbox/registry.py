"""Function discovery: functions/<name>.py|.js or functions/<name>/manifest.yaml + index.*.

Each lookup checks the files again (stat, and a content hash when something changed), so the
call after an edit always runs the new version: the version is a hash of the code and manifest.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alyx.errors import AlyxError, ConfigError
from alyx.sandbox.manifest import FunctionHooks, Limits, Manifest, parse_manifest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FILE_RUNTIMES = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node"}
FOLDER_ENTRIES = {"python": ("index.py", "main.py"), "node": ("index.js", "index.mjs", "index.cjs")}
ESM_SYNTAX = re.compile(r"^\s*(export\s|import\s[^(]|import\s*[{*'\"])", re.M)
SKIP_DIRS = {"__pycache__", ".git"}

log = logging.getLogger("alyx.functions")


@dataclass(frozen=True)
class FunctionSpec:
    """One function at one version: where its code is, how to load it, and its limits."""

    name: str
    runtime: str
    root: Path  # the folder whose files are the function's code
    entry: str  # file to load, relative to root
    files: tuple[str, ...]  # every file to copy into the sandbox, relative to root
    version: str
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    handler: str = "handler"
    invoke_rule: str | None = None
    esm: bool = False  # node only: load the entry as an ES module
    hooks: FunctionHooks | None = None  # what the manifest subscribes it to (None: nothing)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version[:12]}"


def unavailable(message: str) -> AlyxError:
    """The error of calling a function whose files are wrong (a broken manifest): 503, never a 500."""
    return AlyxError("function_unavailable", message, 503)


class FunctionRegistry:
    """Finds functions in a folder and gives their current version; thread-safe, no Flask."""

    def __init__(self, functions_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.functions_dir = Path(functions_dir)
        self.environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._problems: dict[str, str] = {}  # function → the load problem last logged

    def names(self) -> list[str]:
        if not self.functions_dir.is_dir():
            return []
        found = set()
        for p in self.functions_dir.iterdir():
            stem = p.stem if p.is_file() else p.name
            if NAME_RE.match(stem) and (p.suffix in FILE_RUNTIMES and p.is_file() or
                                        p.is_dir() and (p / "manifest.yaml").exists()):
                found.add(stem)
        return sorted(found)

    def get(self, name: str) -> FunctionSpec:
        """The function's current spec; 404 when there is none, 503 function_unavailable when its files are wrong."""
        if not NAME_RE.match(name):
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        try:
            spec = self._load(name)
        except ConfigError as exc:
            self._report(name, str(exc))
            raise unavailable(str(exc)) from None
        self._report(name, None)
        return spec

    def problems(self) -> dict[str, str]:
        """Every function that cannot be loaded now → why (file:line: key: message)."""
        found: dict[str, str] = {}
        for name in self.names():
            try:
                self.get(name)
            except AlyxError as exc:
                if exc.status != 404:
                    found[name] = exc.message
        return found

    def _report(self, name: str, problem: str | None) -> None:
        """Log a function's load problem once, when it appears (and once when it is fixed)."""
        with self._lock:
            before = self._problems.get(name)
            if problem == before:
                return
            if problem is None:
                self._problems.pop(name, None)
            else:
                self._problems[name] = problem
        if problem is None:
            log.info("function %s loads again", name)
        else:
            log.error("function %s cannot be loaded: %s", name, problem)

    def _load(self, name: str) -> FunctionSpec:
        folder = self.functions_dir / name
        if folder.is_dir() and (folder / "manifest.yaml").is_file():
            return self._folder(name, folder)
        candidates = [self.functions_dir / f"{name}{ext}" for ext in FILE_RUNTIMES]
        files = [c for c in candidates if c.is_file()]
        if not files:
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        if len(files) > 1:
            raise ConfigError(f"{self.functions_dir.name}/: more than one file defines the function {name!r}: "
                              f"{', '.join(f.name for f in files)}")
        path = files[0]
        runtime = FILE_RUNTIMES[path.suffix]
        digest = self._digest(self.functions_dir, [path.name])
        return FunctionSpec(name, runtime, self.functions_dir, path.name, (path.name,), digest, Limits(), {},
                            esm=runtime == "node" and self._is_esm(path, self.functions_dir))

    def _folder(self, name: str, folder: Path) -> FunctionSpec:
        label = f"{self.functions_dir.name}/{name}/manifest.yaml"
        manifest: Manifest = parse_manifest(name, (folder / "manifest.yaml").read_text(encoding="utf-8"), label,
                                            self.environ)
        runtime, entry = manifest.runtime, manifest.entry
        if entry is None:
            runtimes = [runtime] if runtime else list(FOLDER_ENTRIES)
            entry = next((e for r in runtimes for e in FOLDER_ENTRIES.get(r, ()) if (folder / e).is_file()), None)
            if entry is None:
                raise ConfigError(f"{label}: no index.py or index.js next to it")
        runtime = runtime or FILE_RUNTIMES.get(Path(entry).suffix)
        if runtime not in FOLDER_ENTRIES:
            raise ConfigError(f"{label}: runtime: expected python or node (cannot tell from entry {entry!r})")
        if not (folder / entry).is_file():
            raise ConfigError(f"{label}: entry: the file {entry} does not exist")
        files = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for f in sorted(filenames):
                files.append(os.path.relpath(os.path.join(dirpath, f), folder))
        digest = self._digest(folder, files)
        return FunctionSpec(name, runtime, folder, entry, tuple(files), digest, manifest.limits, manifest.env,
                            handler=manifest.handler, invoke_rule=manifest.invoke_rule,
                            esm=runtime == "node" and self._is_esm(folder / entry, folder), hooks=manifest.hooks)

    @staticmethod
    def _is_esm(entry: Path, root: Path) -> bool:
        if entry.suffix in (".mjs", ".cjs"):
            return entry.suffix == ".mjs"
        package = root / "package.json"
        if package.is_file() and '"module"' in package.read_text(encoding="utf-8", errors="replace"):
            return True
        return bool(ESM_SYNTAX.search(entry.read_text(encoding="utf-8", errors="replace")))

    def _digest(self, root: Path, files: list[str]) -> str:
        total = hashlib.sha256()
        now = time.time()
        for rel in files:
            path = root / rel
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            key = str(path)
            with self._lock:
                cached = self._hashes.get(key)
            # A file changed within the last two seconds may change again within the clock's
            # granularity without its stamp moving: hash those every time.
            if cached and cached[0] == stamp and now - st.st_mtime > 2:
                file_hash = cached[1]
            else:
                file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
                with self._lock:
                    self._hashes[key] = (stamp, file_hash)
            total.update(rel.encode() + b"\0" + file_hash.encode() + b"\0")
        return total.hexdigest()
