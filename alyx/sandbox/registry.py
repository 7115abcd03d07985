"""Function discovery: functions/<name>.py|.js or functions/<name>/ (index.* and an optional manifest.yaml).

Each lookup checks the files again (stat, and a content hash when something changed), so the
call after an edit always runs the new version: the version is a hash of the code and manifest.
Every entry of functions/ is a function, something users keep there on purpose (``ignored``), or
reported: a name that cannot be run answers 503 function_unavailable with the reason, never 404.
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
from alyx.sandbox.manifest import RUNTIMES, FunctionHooks, Limits, Manifest, parse_manifest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FILE_RUNTIMES = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".go": "go"}
FOLDER_ENTRIES = {"python": ("index.py", "main.py"), "node": ("index.js", "index.mjs", "index.cjs"),
                  "go": ("main.go",)}  # go: the whole folder is its package main (alyx/sandbox/golang.py)
ESM_SYNTAX = re.compile(r"^\s*(export\s|import\s[^(]|import\s*[{*'\"])", re.M)
SKIP_DIRS = {"__pycache__", ".git"}  # inside a function's folder: not part of its code
MANIFEST = "manifest.yaml"
# Code Alyx recognises but cannot run, by suffix: the reason is the problem reported.
UNSUPPORTED_FILES = {ext: "TypeScript is not run directly: compile it to .js (or .mjs)"
                     for ext in (".ts", ".mts", ".cts", ".tsx")}
# What users keep in functions/ that is not a function: never listed, never reported (docs/functions.md).
IGNORED_DIRS = {"node_modules", "sdk"}  # sdk/ (unless it has a manifest): a typed SDK copy for editors
IGNORED_SUFFIXES = (".pyc", ".pyo", ".map", ".md", ".d.ts", ".lock", ".lockb",
                    "~", ".swp", ".swo", ".bak", ".orig", ".tmp")  # editors' backups and swap files
IGNORED_DOCS = {"readme", "license", "licence", "changelog"}  # README, README.txt, LICENSE, ...
IGNORED_FILES = {"package.json", "package-lock.json", "pnpm-lock.yaml", "tsconfig.json", "jsconfig.json",
                 "requirements.txt", "pyproject.toml", "go.mod", "go.sum"}
RUNNABLE_HINT = ("a function is a .py, .js, .mjs, .cjs or .go file, or a folder with index.py, index.js or "
                 "main.go (and an optional manifest.yaml)")


def ignored(entry: Path, is_dir: bool | None = None) -> bool:
    """True for what users keep in functions/ on purpose: dotfiles, _private helpers, caches, docs, package files."""
    name = entry.name
    lower = name.lower()
    if name.startswith((".", "_")):
        return True
    if entry.is_dir() if is_dir is None else is_dir:
        return name in IGNORED_DIRS and not (entry / MANIFEST).is_file()
    return lower.endswith(IGNORED_SUFFIXES) or lower in IGNORED_FILES or lower.split(".")[0] in IGNORED_DOCS


def is_code(path: Path) -> bool:
    """A file that is a function's code (runnable or not yet): it claims its stem, ``hello.go`` → ``hello``."""
    return path.suffix in FILE_RUNTIMES or path.suffix.lower() in UNSUPPORTED_FILES


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
        """Every name an entry of functions/ claims: functions, and what cannot run (get() says why)."""
        return sorted(self._entries())

    def get(self, name: str) -> FunctionSpec:
        """The function's current spec; 404 when there is none, 503 function_unavailable when its files are wrong."""
        return self._spec(name, self._entries().get(name))

    def problems(self) -> dict[str, str]:
        """Every name in functions/ that cannot be run now → why (file:line: key: message, or the entry's problem)."""
        found: dict[str, str] = {}
        claimed = self._entries()
        for name in sorted(claimed):
            try:
                self._spec(name, claimed[name])
            except AlyxError as exc:
                found[name] = exc.message
        return found

    def _spec(self, name: str, entries: list[str] | None) -> FunctionSpec:
        if not entries:
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        try:
            spec = self._load(name, entries)
        except ConfigError as exc:
            self._report(name, str(exc))
            raise unavailable(str(exc)) from None
        self._report(name, None)
        return spec

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

    def _entries(self) -> dict[str, list[str]]:
        """Each name claimed in functions/ → the entries claiming it (``hello.py``, ``hello/``), minus ignored ones."""
        try:
            listing = list(os.scandir(self.functions_dir))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        claimed: dict[str, list[str]] = {}
        for item in listing:
            path, is_dir = Path(item.path), item.is_dir()
            if ignored(path, is_dir):
                continue
            if is_dir:
                claimed.setdefault(item.name, []).append(item.name + "/")
            else:  # any other file is reported under its own name: notes.txt never breaks notes.py
                claimed.setdefault(path.stem if is_code(path) else item.name, []).append(item.name)
        return claimed

    def _load(self, name: str, entries: list[str]) -> FunctionSpec:
        where = self.functions_dir.name
        if len(entries) > 1:
            raise ConfigError(f"{where}/: more than one file defines the function {name!r}: "
                              f"{', '.join(sorted(entries))}")
        (entry,) = entries
        path, is_folder = self.functions_dir / entry, entry.endswith("/")
        if not is_folder and path.suffix not in FILE_RUNTIMES:
            reason = UNSUPPORTED_FILES.get(path.suffix.lower())
            raise ConfigError(f"{where}/{entry}: {reason or f'Alyx cannot run this file: {RUNNABLE_HINT}'}")
        if not NAME_RE.match(name):
            raise ConfigError(f"{where}/{entry}: {name!r} is not a function name (letters, digits, '-' and '_', "
                              "starting with a letter or digit, at most 64 characters)")
        if is_folder:
            return self._folder(name, path)
        runtime = FILE_RUNTIMES[path.suffix]
        digest = self._digest(self.functions_dir, [path.name])
        return FunctionSpec(name, runtime, self.functions_dir, path.name, (path.name,), digest, Limits(), {},
                            esm=runtime == "node" and self._is_esm(path, self.functions_dir))

    def _folder(self, name: str, folder: Path) -> FunctionSpec:
        """A function folder: its manifest.yaml (or the defaults without one) and its entry file."""
        if (folder / MANIFEST).is_file():
            label = f"{self.functions_dir.name}/{name}/{MANIFEST}"
            manifest = parse_manifest(name, (folder / MANIFEST).read_text(encoding="utf-8"), label, self.environ)
        else:
            label = f"{self.functions_dir.name}/{name}/"
            manifest = Manifest(FunctionHooks(name))
        runtime, entry = manifest.runtime, manifest.entry
        if entry is None:
            runtimes = [runtime] if runtime else list(FOLDER_ENTRIES)
            entry = next((e for r in runtimes for e in FOLDER_ENTRIES.get(r, ()) if (folder / e).is_file()), None)
            if entry is None:
                raise ConfigError(self._no_entry(label, folder))
        runtime = runtime or FILE_RUNTIMES.get(Path(entry).suffix)
        if runtime not in FOLDER_ENTRIES:
            raise ConfigError(f"{label}: runtime: expected {', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]} "
                              f"(cannot tell from entry {entry!r})")
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
    def _no_entry(label: str, folder: Path) -> str:
        """Why a function folder has nothing to run."""
        if label.endswith(MANIFEST):
            return f"{label}: no index.py, index.js or main.go next to it"
        if not any(not ignored(p) for p in folder.iterdir()):
            return f"{label}: an empty folder; {RUNNABLE_HINT}"
        entries = ", ".join(e for r in FOLDER_ENTRIES.values() for e in r)
        return f"{label}: no manifest.yaml and no index file ({entries}), so Alyx does not know what to run"

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
