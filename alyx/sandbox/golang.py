"""Go functions: compile a function (and the generic loader) into static binaries, once per version.

A Go function is its package main with ``func Handle(w http.ResponseWriter, r *http.Request)``. The
build copies its files into a scratch folder, points ``github.com/watzon/alyx`` at the runtime
module shipped in runtimes/go (a ``replace`` directive, so it resolves offline), adds a generated
``main`` that serves the runtime protocol with the handler, and runs ``go build`` with
``CGO_ENABLED=0``. Binaries are cached on disk by a hash of the function's version (its sources,
go.mod, go.sum and manifest), the runtime module and the Go version; a compile error is a
LoadError (file, line, the compiler's output), shown like a Python syntax error.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

from alyx.resources import resource_dir
from alyx.sandbox.protocol import LoadError
from alyx.sandbox.registry import FunctionSpec

MODULE = "github.com/watzon/alyx"
LOADER = "alyx-go-runtime"  # the generic sandbox's binary (runtimes/go/cmd/alyx-go-runtime)
BINARY = "alyx-function"  # a function's binary, as copied into a sandbox's code folder
GENERATED_MAIN = "alyx_main_gen.go"
BUILD_TIMEOUT = 600.0  # a first build also compiles the standard library into the build cache
ERROR_LINE = re.compile(r"^(?:\./)?([^\s:]+\.go):(\d+)(?::(\d+))?: (.*)$", re.M)
NETWORK_HINTS = ("dial tcp", "no such host", "connection refused", "i/o timeout", "GOPROXY=off",
                 "module lookup disabled", "network is unreachable", "TLS handshake")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
RUNTIME_RECHECK = 2.0  # seconds: how stale the runtime module's hash may be (an edit of runtimes/go shows then)
_runtime_hashes: dict[Path, tuple[float, tuple[tuple[str, int, int], ...], str]] = {}


class GoUnavailable(Exception):
    """No Go toolchain on this server."""


def runtime_module() -> Path:
    """runtimes/go: the module ``github.com/watzon/alyx`` with pkg/runtime and the loader."""
    return resource_dir("runtimes") / "go"


def go_command() -> str:
    """The ``go`` command (``ALYX_GO`` names another); GoUnavailable when there is none."""
    found = os.environ.get("ALYX_GO") or shutil.which("go") or next(
        (p for p in ("/usr/lib/go/bin/go", "/usr/local/go/bin/go") if os.path.exists(p)), None)
    if not found:
        raise GoUnavailable("Go functions need the Go toolchain on the server (apt-get install golang-go, "
                            "or run scripts/provision.sh)")
    return found


@functools.lru_cache(maxsize=4)
def go_version(go: str) -> str:
    """``go1.19.8``: part of every cache key, so a new toolchain rebuilds everything."""
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise GoUnavailable(f"`{go} env GOVERSION` failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def cache_dir() -> Path:
    """Where binaries and Go's own build and module caches live (``ALYX_GO_CACHE``)."""
    if os.environ.get("ALYX_GO_CACHE"):
        return Path(os.environ["ALYX_GO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "alyx" / "go"


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _runtime_hash() -> str:
    """The runtime module's tree hash, read again only when a file in it changed (size or mtime), looked
    at once per RUNTIME_RECHECK seconds: every bind asks for its function's binary, and hashing the
    module's sources cost ~0.3 ms of each (a walk of its files, ~0.1 ms)."""
    root = runtime_module()
    now = time.monotonic()
    with _locks_guard:
        known = _runtime_hashes.get(root)
    if known is not None and now - known[0] < RUNTIME_RECHECK:
        return known[2]
    stamp = tuple(sorted((entry.path, st.st_size, st.st_mtime_ns) for folder, _dirs, _files in os.walk(root)
                         for entry in os.scandir(folder) if entry.is_file() and (st := entry.stat())))
    digest = known[2] if known is not None and known[1] == stamp else _tree_hash(root)
    with _locks_guard:
        _runtime_hashes[root] = (now, stamp, digest)
    return digest


def _go_env(go: str) -> dict[str, str]:
    cache = cache_dir()
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(cache),
           "GOCACHE": str(cache / "build"), "GOPATH": str(cache / "gopath"), "CGO_ENABLED": "0",
           "GOOS": "linux", "GOFLAGS": "-mod=mod", "GO111MODULE": "on", "GOWORK": "off", "GOTOOLCHAIN": "local"}
    for name in ("GOPROXY", "GONOSUMDB", "GONOSUMCHECK", "GOPRIVATE", "GONOPROXY", "GOSUMDB", "GOARCH",
                 "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _compile(go: str, workdir: Path, package: str, out: Path) -> subprocess.CompletedProcess[str]:
    tmp = out.with_name(f"{out.name}.{secrets.token_hex(4)}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), package],
                              cwd=workdir, env=_go_env(go), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise LoadError(f"go build took longer than {BUILD_TIMEOUT:g}s", {}) from None
    if done.returncode == 0:
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    else:
        tmp.unlink(missing_ok=True)
    return done


def loader_binary() -> Path:
    """The generic Go sandbox's static binary, built from runtimes/go once per runtime and Go version."""
    go = go_command()
    module = runtime_module()
    key = hashlib.sha256(f"{_runtime_hash()}\0{go_version(go)}".encode()).hexdigest()[:24]
    out = cache_dir() / "loader" / key / LOADER
    if out.exists():
        return out
    with _lock(f"loader-{key}"):
        if not out.exists():
            done = _compile(go, module, "./cmd/alyx-go-runtime", out)
            if done.returncode != 0:
                raise GoUnavailable(f"the Go runtime in {module} does not build: {done.stderr.strip()[-2000:]}")
    return out


def handler_name(spec: FunctionSpec) -> str:
    """The manifest's ``handler`` (Go's default: ``Handle``, as in the README)."""
    return "Handle" if spec.handler == "handler" else spec.handler


def function_binary(spec: FunctionSpec) -> Path:
    """The compiled binary of this function version (built now when it is not cached); LoadError on a
    compile error, naming the file and line like a Python syntax error."""
    try:
        go = go_command()
        version = go_version(go)
    except GoUnavailable as exc:
        raise LoadError(str(exc), {}) from None
    identity = f"{spec.version}\0{handler_name(spec)}\0{_runtime_hash()}\0{version}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:32]
    out = cache_dir() / "bin" / key / BINARY
    if out.exists():
        return out
    with _lock(key):
        if out.exists():
            return out
        work = cache_dir() / "work" / f"{key}-{secrets.token_hex(4)}"
        try:
            _prepare(go, spec, work, version)
            done = _compile(go, work, ".", out)
            if done.returncode != 0:
                raise _compile_error(spec, done.stdout + done.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _prepare(go: str, spec: FunctionSpec, work: Path, version: str) -> None:
    """The build folder: the function's files, its go.mod pointed at runtimes/go, and the generated main."""
    work.mkdir(parents=True)
    for rel in spec.files:
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.root / rel, target)
    if not (work / "go.mod").exists():
        minor = ".".join(version.removeprefix("go").split(".")[:2])
        (work / "go.mod").write_text(f"module alyx.local/{spec.name}\n\ngo {minor}\n", encoding="utf-8")
    edit = subprocess.run([go, "mod", "edit", f"-require={MODULE}@v0.0.0",
                           f"-replace={MODULE}={runtime_module()}"], cwd=work, env=_go_env(go),
                          capture_output=True, text=True, timeout=60)
    if edit.returncode != 0:
        raise LoadError(f"go.mod: {edit.stderr.strip()}", {"file": "go.mod", "traceback": edit.stderr})
    (work / GENERATED_MAIN).write_text(
        "// Code generated by Alyx: serves the runtime protocol with the function's handler.\n"
        "package main\n\nimport alyxruntime \"github.com/watzon/alyx/pkg/runtime\"\n\n"
        f"func main() {{ alyxruntime.Serve({handler_name(spec)}) }}\n", encoding="utf-8")


def _compile_error(spec: FunctionSpec, output: str) -> LoadError:
    """go build's output → the LoadError a caller and the execution log see."""
    text = output.strip()
    details: dict[str, object] = {"traceback": text}
    handler = handler_name(spec)
    match = ERROR_LINE.search(text)
    if any(hint in text for hint in NETWORK_HINTS):
        proxy = os.environ.get("GOPROXY", "https://proxy.golang.org,direct")
        last = [line for line in text.splitlines() if line.strip()][-1]
        message = (f"the dependencies in go.mod could not be fetched: no Go module proxy is reachable from "
                   f"this server (GOPROXY={proxy}): {last.removeprefix('./')[:300]}")
        details["file"] = "go.mod"
    elif match and match.group(1) == GENERATED_MAIN:
        message = (f"compile error: the package defines no func {handler}(w http.ResponseWriter, "
                   f"r *http.Request) (package main): {match.group(4)}")
    elif match:
        details.update({"file": match.group(1), "line": int(match.group(2))})
        message = f"compile error: {match.group(0).removeprefix('./')}"
    else:
        first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), text)
        message = f"go build failed: {first[:500]}"
    return LoadError(message, details, "", text + "\n")
