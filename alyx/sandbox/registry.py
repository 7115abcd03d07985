"""Function discovery: functions/<name>.py|.js or functions/<name>/manifest.yaml + index.*.

Each lookup checks the files again (stat, and a content hash when something changed), so the
call after an edit always runs the new version: the version is a hash of the code and manifest.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alyx.errors import AlyxError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FILE_RUNTIMES = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node"}
FOLDER_ENTRIES = {"python": ("index.py", "main.py"), "node": ("index.js", "index.mjs", "index.cjs")}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ESM_SYNTAX = re.compile(r"^\s*(export\s|import\s[^(]|import\s*[{*'\"])", re.M)
SKIP_DIRS = {"__pycache__", ".git"}


@dataclass(frozen=True)
class Limits:
    """Resource limits and pool sizing of one function (manifest keys of the same names)."""

    timeout: float = 10.0  # seconds, from the call's arrival (queueing counts)
    memory: int = 128  # MB
    cpu: float = 1.0  # cores
    max_instances: int = 4
    concurrency: int = 1  # calls at once inside one sandbox
    min_warm: int = 0  # bound sandboxes kept warm even when idle
    network: bool = False


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

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version[:12]}"


def _config_error(name: str, message: str) -> AlyxError:
    return AlyxError("function_config_error", f"Function {name!r}: {message}", 500)


def _number(name: str, manifest: dict[str, Any], key: str, kind: type, default: Any, minimum: float) -> Any:
    value = manifest.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise _config_error(name, f"manifest.yaml: {key} must be a number, got {value!r}")
    if value < minimum:
        raise _config_error(name, f"manifest.yaml: {key} must be at least {minimum}, got {value!r}")
    return kind(value)


def _memory(name: str, value: Any) -> int:
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([mMgG])?[iI]?[bB]?\s*", value)
        if not m:
            raise _config_error(name, f"manifest.yaml: memory must be megabytes (128) or like '256M', got {value!r}")
        return int(m.group(1)) * (1024 if (m.group(2) or "m").lower() == "g" else 1)
    return _number(name, {"memory": value}, "memory", int, 128, 32)


MANIFEST_KEYS = {"name", "runtime", "timeout", "memory", "cpu", "max_instances", "concurrency", "min_warm",
                 "network", "env", "rules", "handler", "entry", "hooks", "schedules", "retries"}


def parse_manifest(name: str, manifest: Any, environ: Mapping[str, str]) -> tuple[Limits, dict[str, str], str | None]:
    """Limits, resolved env and the invoke rule from a manifest mapping (ConfigError-like AlyxError)."""
    if manifest is None:
        manifest = {}
    if not isinstance(manifest, dict):
        raise _config_error(name, "manifest.yaml must be a mapping")
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        known = ", ".join(sorted(MANIFEST_KEYS))
        raise _config_error(name, f"manifest.yaml: unknown key {unknown[0]!r}; known: {known}")
    network = manifest.get("network", False)
    if not isinstance(network, bool):
        raise _config_error(name, f"manifest.yaml: network must be true or false, got {network!r}")
    limits = Limits(
        timeout=_number(name, manifest, "timeout", float, 10.0, 0.01),
        memory=_memory(name, manifest.get("memory", 128)),
        cpu=_number(name, manifest, "cpu", float, 1.0, 0.01),
        max_instances=_number(name, manifest, "max_instances", int, 4, 1),
        concurrency=_number(name, manifest, "concurrency", int, 1, 1),
        min_warm=_number(name, manifest, "min_warm", int, 0, 0),
        network=network,
    )
    raw_env = manifest.get("env") or {}
    if not isinstance(raw_env, dict):
        raise _config_error(name, "manifest.yaml: env must be a mapping of names to values")
    env = {str(k): ENV_REF.sub(lambda m: environ.get(m.group(1), ""), "" if v is None else str(v))
           for k, v in raw_env.items()}
    rules = manifest.get("rules") or {}
    if not isinstance(rules, dict) or set(rules) - {"invoke"}:
        raise _config_error(name, "manifest.yaml: rules may only hold 'invoke' (a CEL expression)")
    rule = rules.get("invoke")
    if rule is not None and not isinstance(rule, (str, bool)):
        raise _config_error(name, "manifest.yaml: rules.invoke must be a CEL expression string")
    return limits, env, (str(rule).lower() if isinstance(rule, bool) else rule)


class FunctionRegistry:
    """Finds functions in a folder and gives their current version; thread-safe, no Flask."""

    def __init__(self, functions_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.functions_dir = Path(functions_dir)
        self.environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[tuple[int, int, int], str]] = {}

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
        """The function's current spec; 404 when there is none, 500 when its manifest is wrong."""
        if not NAME_RE.match(name):
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        folder = self.functions_dir / name
        if folder.is_dir() and (folder / "manifest.yaml").is_file():
            return self._folder(name, folder)
        candidates = [self.functions_dir / f"{name}{ext}" for ext in FILE_RUNTIMES]
        files = [c for c in candidates if c.is_file()]
        if not files:
            raise AlyxError("not_found", f"No function named {name!r}.", 404)
        if len(files) > 1:
            raise _config_error(name, f"more than one file defines it: {', '.join(f.name for f in files)}")
        path = files[0]
        runtime = FILE_RUNTIMES[path.suffix]
        digest = self._digest(self.functions_dir, [path.name])
        limits, env, rule = parse_manifest(name, {}, self.environ)
        return FunctionSpec(name, runtime, self.functions_dir, path.name, (path.name,), digest, limits, env,
                            esm=runtime == "node" and self._is_esm(path, self.functions_dir))

    def _folder(self, name: str, folder: Path) -> FunctionSpec:
        manifest_path = folder / "manifest.yaml"
        try:
            manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise _config_error(name, f"manifest.yaml{where} is not valid YAML") from None
        manifest = manifest if manifest is not None else {}
        if not isinstance(manifest, dict):
            raise _config_error(name, "manifest.yaml must be a mapping")
        runtime = manifest.get("runtime")
        entry = manifest.get("entry")
        if entry is None:
            runtimes = [runtime] if runtime else list(FOLDER_ENTRIES)
            entry = next((e for r in runtimes for e in FOLDER_ENTRIES.get(r, ()) if (folder / e).is_file()), None)
            if entry is None:
                raise _config_error(name, "no index.py or index.js next to manifest.yaml")
        runtime = runtime or FILE_RUNTIMES.get(Path(entry).suffix)
        if runtime not in FOLDER_ENTRIES:
            raise _config_error(name, f"manifest.yaml: runtime must be python or node, got {runtime!r}")
        if not (folder / entry).is_file():
            raise _config_error(name, f"entry file {entry} does not exist")
        limits, env, rule = parse_manifest(name, manifest, self.environ)
        files = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for f in sorted(filenames):
                files.append(os.path.relpath(os.path.join(dirpath, f), folder))
        digest = self._digest(folder, files)
        return FunctionSpec(name, runtime, folder, entry, tuple(files), digest, limits, env,
                            handler=str(manifest.get("handler") or "handler"), invoke_rule=rule,
                            esm=runtime == "node" and self._is_esm(folder / entry, folder))

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
