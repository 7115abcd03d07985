"""Sandbox tiers behind one interface: start, init, invoke, stop, stats.

A Sandbox is one runtime process (or container) serving the runtime protocol on a Unix socket in
its own host folder (``sock/``), with the function's code copied into ``code/`` when it is bound.
This module holds the shared part and the process tier; bubblewrap is in bwrap_tier, Docker in docker_tier.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alyx.background import spawn
from alyx.resources import resource_dir
from alyx.sandbox import golang
from alyx.sandbox.capture import StreamCapture
from alyx.sandbox.protocol import LoadError, RawResponse, RuntimeClient, RuntimeGone, RuntimeTimeout
from alyx.sandbox.registry import FunctionSpec

log = logging.getLogger("alyx.sandbox")

RUNTIMES_DIR = resource_dir("runtimes")
SHIMS = {"python": "python/shim.py", "node": "node/shim.js", "go": f"go/{golang.LOADER}"}  # go: built (golang.py)
START_TIMEOUT = 15.0
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
SECRET_FILE = "/run/alyx-secret/rt.secret"  # inside bwrap and docker sandboxes (read-only)
PRLIMIT = shutil.which("prlimit") or ""  # util-linux: sets a sandbox's rlimits without a preexec_fn
# How long to wait for a call's end mark on stdout/stderr once the response is in. It normally comes
# first (same process, written before the response); the wait only matters on a loaded machine.
OUTPUT_WAIT = 5.0
# What a runtime's last words say when it ran out of memory (Node, Python, the libc, Go).
OOM_SIGNS = ("heap out of memory", "MemoryError", "Cannot allocate memory", "fatal error: runtime: out of memory",
             "fatal error: out of memory", "fatal error: runtime: cannot allocate memory")


@dataclass(frozen=True)
class Profile:
    """What a sandbox is started with, before it knows its function."""

    runtime: str
    memory: int = 128  # MB
    cpu: float = 1.0
    network: bool = False


@dataclass
class ExitInfo:
    code: int | None
    oom: bool = False
    detail: str = ""


def _ms_since(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 3)


def node_heap_mb(memory: int) -> int:
    """V8's old-space limit for a memory budget: leave room for the runtime itself."""
    return max(16, int(memory * 0.75))


def runtime_env(profile: Profile) -> dict[str, str]:
    """Per-runtime variables of a sandbox: Go's soft memory limit, below the hard one (like Node's heap)."""
    return {"GOMEMLIMIT": f"{node_heap_mb(profile.memory)}MiB"} if profile.runtime == "go" else {}


def python_command(interpreter: str, shim_dir: str) -> list[str]:
    """How a Python sandbox starts: the shim imported as a module, so its cached .pyc is loaded instead of
    ~600 lines compiled at every start (see precompile_python_shim); its folder then leaves sys.path."""
    code = f"import sys; sys.path.insert(0, {shim_dir!r}); import shim; del sys.path[0]; shim.main()"
    return [interpreter, "-u", "-I", "-c", code]


def precompile_python_shim(interpreter: str) -> None:
    """Write the shim's .pyc for this interpreter beside it (as importing it would), best effort: where
    runtimes/ is read-only each start compiles it instead, as before. Checked against the source's mtime."""
    try:
        subprocess.run([interpreter, "-I", "-m", "py_compile", str(RUNTIMES_DIR / "python" / "shim.py")],
                       capture_output=True, timeout=60, env={"PATH": CLEAN_PATH})
    except (OSError, subprocess.TimeoutExpired):
        pass


def base_env(extra: dict[str, str]) -> dict[str, str]:
    # Nothing of the server's environment is passed on: a function sees only these and its manifest env.
    return {"PATH": CLEAN_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2", **extra}


class Sandbox(ABC):
    """One warm runtime. Subclasses launch and kill it; the protocol part is shared."""

    tier = "abstract"

    def __init__(self, profile: Profile, callback_dir: Path | None = None) -> None:
        began = time.perf_counter()
        self.profile = profile
        self.callback_dir = callback_dir  # holds api.sock: the Alyx API, as the invocation's caller
        self.id = secrets.token_hex(6)
        self.secret = secrets.token_urlsafe(24)
        # The server's only (0700): no other local user reaches the socket, the code or the secret.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"alyx-{profile.runtime[:2]}-"))
        os.chmod(self.workdir, 0o700)
        (self.workdir / "sock").mkdir(mode=0o700)
        self._own_socket_dir(self.workdir / "sock")
        (self.workdir / "code").mkdir(mode=0o755)
        os.chmod(self.workdir / "code", 0o755)  # whatever the umask: the runtime may run as another uid
        # The secret travels as a file (never argv, never a container's environment): ALYX_SECRET_FILE.
        (self.workdir / "secret").mkdir(mode=0o755)
        secret_file = self.workdir / "secret" / "rt.secret"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w") as out:
            out.write(self.secret)
        self.client = RuntimeClient(str(self.workdir / "sock" / "rt.sock"), self.secret)
        self.stdout = StreamCapture()
        self.stderr = StreamCapture()
        self.function: FunctionSpec | None = None
        self.started_at = 0.0
        self.stopped = False
        self._lifecycle = threading.Lock()
        # Pool bookkeeping (owned by the manager, under its lock).
        self.active = 0
        self.last_used = time.monotonic()
        self.calls = 0
        # Where this sandbox's start and bind went, in ms per phase (docs/functions.md, "Where a start goes").
        self.phases: dict[str, float] = {"prepare": _ms_since(began)}
        self.exec_at = 0.0  # time.time() when the runtime process was asked to start (set by _launch)

    def _own_socket_dir(self, path: Path) -> None:
        """Make the socket folder writable by the runtime only (here: it runs as the server's uid)."""
        os.chmod(path, 0o700)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the runtime and wait until it answers /__rt/health."""
        self.started_at = time.monotonic()
        began = time.time()
        try:
            self._launch()
        except RuntimeGone:
            self.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - an engine or OS error: no sandbox, say why
            self.stop()
            raise RuntimeGone(f"{self.tier} {self.profile.runtime} runtime could not be launched: {exc}") from None
        launched = time.time()
        try:
            health = self.client.wait_ready(time.monotonic() + START_TIMEOUT, self.alive)
        except (RuntimeGone, RuntimeTimeout) as exc:
            info = self.exit_info()
            tail = self.stderr.tail_text()[-2000:]
            self.stop()
            raise RuntimeGone(f"{self.tier} {self.profile.runtime} runtime failed to start: {exc} "
                              f"(exit {info.code}) {tail}".strip()) from None
        self._note_boot(health.get("boot"), launched, time.time())
        self.phases["start"] = round((time.time() - began) * 1000, 3)

    def _note_boot(self, boot: Any, launched: float, ready: float) -> None:
        """The runtime's own marks (epoch seconds: process start, its shim's first line, imports done,
        listening) → phases: exec, boot, imports, listen, then `ready` (until the server knew)."""
        if not isinstance(boot, dict) or not self.exec_at:
            return
        marks = [("exec", boot.get("process")), ("boot", boot.get("main")), ("imports", boot.get("imported")),
                 ("listen", boot.get("listening"))]
        last = self.exec_at
        for name, at in marks:
            if isinstance(at, (int, float)) and at > 0:
                self.phases[name] = round(max(0.0, at - last) * 1000, 3)
                last = at
        self.phases["ready"] = round(max(0.0, ready - max(last, launched)) * 1000, 3)

    def init(self, spec: FunctionSpec, timeout: float) -> None:
        """Bind this sandbox to one function version: copy its code in, then POST /__rt/init."""
        began = time.perf_counter()
        code = self.workdir / "code"
        root, files, entry, mode = spec.root, spec.files, spec.entry, 0o644
        if spec.runtime == "go":  # the compiled binary (cached per version), never the sources
            binary = golang.function_binary(spec)
            root, files, entry, mode = binary.parent, (), binary.name, 0o755
            try:  # a hard link: no copy of megabytes per sandbox (the cache's file is read-only to it)
                os.link(binary, code / entry)
            except OSError:
                files = (entry,)
        nested = False
        for rel in files:
            target = code / rel
            if os.sep in rel:
                target.parent.mkdir(parents=True, exist_ok=True)
                nested = True
            shutil.copyfile(root / rel, target)
            os.chmod(target, mode)
        if nested:  # the folders made above; code/ itself is 0755 from the start
            for d, _dirs, _files in os.walk(code):
                os.chmod(d, 0o755)
        if spec.runtime == "node" and not (code / "package.json").exists():  # unless the function ships its own
            (code / "package.json").write_text(json.dumps({"type": "module" if spec.esm else "commonjs"}))
            os.chmod(code / "package.json", 0o644)
        self.function = spec
        self.phases["copy"] = _ms_since(began)
        began = time.perf_counter()
        body = json.dumps({"code_dir": self.code_dir, "entry": entry, "handler": spec.handler,
                           "env": dict(spec.env), "function": spec.name}).encode()
        self.stdout.begin("init")
        self.stderr.begin("init")
        sent = answered = time.time()
        try:
            response = self.client.request("POST", "/__rt/init", [("Content-Type", "application/json")], body,
                                           timeout)
            answered = time.time()
        finally:
            self.init_stdout = self.stdout.finish("init", OUTPUT_WAIT)
            self.init_stderr = self.stderr.finish("init", OUTPUT_WAIT)
            self.phases["output"] = round(max(0.0, time.time() - answered) * 1000, 3)
            self.phases["init"] = _ms_since(began)
        if response.status != 200:
            error = response.json().get("error", {}) if response.body else {}
            raise LoadError(error.get("message") or f"init failed with HTTP {response.status}",
                            error.get("details") or {}, self.init_stdout, self.init_stderr)
        answer = response.json() if response.body else None
        if isinstance(answer, dict):
            for name in ("load_ms", "esm_ms"):  # the runtime's own share of init: its module load, Node's ES loader
                if isinstance(answer.get(name), (int, float)):
                    self.phases[name[:-3]] = answer[name]
            self._note_bind(answer.get("marks"), sent, answered)

    def _note_bind(self, marks: Any, sent: float, answered: float) -> None:
        """The runtime's marks of a bind (epoch seconds) → phases: send (until the runtime had /__rt/init),
        Go's handover (the loader's work until its exec) and runtime (the function binary's Go runtime
        start and package init), Node's import, then answer (from bound until the server had the answer)."""
        if not isinstance(marks, dict):
            return
        times = {"sent": sent, "answered": answered,
                 **{k: v for k, v in marks.items() if isinstance(v, (int, float)) and v > 0}}
        for phase, since, until in (("send", "sent", "received"), ("handover", "received", "exec"),
                                    ("runtime", "exec", "started"), ("import", "importing", "imported"),
                                    ("answer", "bound", "answered")):
            if since in times and until in times:
                self.phases[phase] = round(max(0.0, times[until] - times[since]) * 1000, 3)

    def invoke(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
               timeout: float, max_body: int | None = None) -> RawResponse:
        self.calls += 1
        return self.client.request(method, target, headers, body, timeout, max_body)

    @property
    def code_dir(self) -> str:
        return str(self.workdir / "code")

    def stop(self) -> None:
        """Kill the runtime and remove everything it had on the host; safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        self.client.close()
        try:
            self._kill()
        except Exception:  # noqa: BLE001 - cleanup must go on
            log.exception("sandbox %s: kill failed", self.id)
        self.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stats(self) -> dict[str, Any]:
        return {"id": self.id, "tier": self.tier, "runtime": self.profile.runtime,
                "function": self.function.key if self.function else None, "memory_limit_mb": self.profile.memory,
                "active": self.active, "calls": self.calls, "alive": self.alive(),
                "idle_s": round(time.monotonic() - self.last_used, 3)}

    # -- tier-specific ---------------------------------------------------------------------------
    @abstractmethod
    def _launch(self) -> None: ...

    @abstractmethod
    def _kill(self) -> None: ...

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def exit_info(self, wait: float = 0.0) -> ExitInfo: ...


class Tier(ABC):
    """Makes sandboxes of one kind."""

    name = "abstract"
    callback_dir: Path | None = None  # mounted into every sandbox when set (see alyx/callback.py)

    @abstractmethod
    def create(self, profile: Profile) -> Sandbox: ...

    def replenish(self) -> None:  # noqa: B027 - only Docker prepares anything ahead
        """Prepare ahead what makes the next start quicker (the manager's reaper calls it, off any call's path)."""

    def close(self) -> None:  # noqa: B027 - most tiers hold nothing of their own
        """Release what the tier itself holds (not its sandboxes: the manager stops those)."""


def _pump(stream: Any, capture: StreamCapture) -> None:
    # read1 on the Popen stream, not os.read on its fd: under gevent the stream is cooperative,
    # while os.read would block the whole hub until the sandbox writes something.
    try:
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                break
            capture.feed(chunk)
    except (OSError, ValueError):
        pass
    finally:
        capture.close()
        try:
            stream.close()
        except OSError:
            pass


def interpreter(runtime: str) -> str:
    if runtime == "python":
        return sys.executable
    if runtime == "go":
        try:
            return str(golang.loader_binary())
        except golang.GoUnavailable as exc:
            raise RuntimeGone(str(exc)) from None
    found = shutil.which("node")
    if not found:
        raise RuntimeGone("the node runtime needs `node` on the PATH")
    return found


class ProcessSandbox(Sandbox):
    """A plain child process with rlimits and a clean environment (development only)."""

    tier = "process"

    def _command(self) -> list[str]:
        shim = str(RUNTIMES_DIR / SHIMS[self.profile.runtime])
        if self.profile.runtime == "python":
            return python_command(interpreter("python"), str(RUNTIMES_DIR / "python"))
        if self.profile.runtime == "go":
            return [interpreter("go")]
        return [interpreter("node"), f"--max-old-space-size={node_heap_mb(self.profile.memory)}", shim]

    def _env(self) -> dict[str, str]:
        extra = {"ALYX_SOCKET": str(self.workdir / "sock" / "rt.sock"), "ALYX_LISTEN_FD": str(self.listen_fd),
                 "ALYX_SECRET_FILE": str(self.workdir / "secret" / "rt.secret"), "ALYX_LIFELINE": "stdin",
                 **runtime_env(self.profile)}
        if self.callback_dir:
            extra["ALYX_API_SOCKET"] = str(self.callback_dir / "api.sock")
        return base_env(extra)

    def _data_limit(self) -> int:
        # RLIMIT_AS kills Node at start (STACK.md): limit the data segment instead, with headroom
        # for the runtime's own allocations.
        return (self.profile.memory + 64) * 1024 * 1024

    def _limits(self) -> None:
        """The rlimits, set in the child before exec: only where prlimit(1) is missing (see _launch)."""
        data = self._data_limit()
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    def _launch(self) -> None:
        # The server binds and listens on the runtime's socket itself and hands it over (ALYX_LISTEN_FD):
        # the health check connects at once and waits in the backlog, with no polling while it boots.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.workdir / "sock" / "rt.sock"))
            listener.listen(64)
            self.listen_fd = listener.fileno()
            command, preexec = self._command(), None
            if PRLIMIT:  # limits set by prlimit(1) before it execs the runtime: no preexec_fn, so Python can
                # vfork instead of fork (a fork of a big server process costs ~20 ms of page tables)
                command = [PRLIMIT, f"--data={self._data_limit()}", "--core=0", "--nofile=1024", "--", *command]
            else:
                preexec = self._limits
            began = time.perf_counter()
            self.exec_at = time.time()
            with self._lifecycle:  # stop() during a launch must not miss the process being started
                if self.stopped:
                    raise RuntimeGone("stopped before start")
                self.proc = subprocess.Popen(
                    # stdin is the lifeline: this process holds its write end, so if the server dies (even
                    # killed with -9) the runtime reads EOF and exits instead of lingering.
                    command, env=self._env(), cwd=str(self.workdir), stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec,
                    close_fds=True, pass_fds=(self.listen_fd,))
            self.phases["spawn"] = _ms_since(began)
        finally:
            listener.close()  # the runtime holds it now: when it exits, callers waiting on it are refused
        self._pumps = []
        for stream, capture in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            self._pumps.append(spawn(_pump, stream, capture, name=f"alyx-sandbox-{self.id}-io"))

    def alive(self) -> bool:
        return getattr(self, "proc", None) is not None and self.proc.poll() is None

    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        try:
            code = self.proc.wait(timeout=wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            for pump in self._pumps:  # the last words of a dead runtime are in its pipes
                pump.join(timeout=0.5)
        tail = self.stderr.tail_text()
        oom = any(sign in tail for sign in OOM_SIGNS)
        return ExitInfo(code, oom, tail[-2000:])

    def _kill(self) -> None:
        with self._lifecycle:
            if getattr(self, "proc", None) is None:
                return
        try:  # the whole group: user code may have started children of its own
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("sandbox %s: pid %s did not die", self.id, self.proc.pid)
        for pump in self._pumps:
            pump.join(timeout=0.5)
        if self.proc.stdin:
            self.proc.stdin.close()


class ProcessTier(Tier):
    """Development only: the runtime runs as this user, with rlimits and a clean environment."""

    name = "process"

    def __init__(self) -> None:
        log.warning("functions run in the 'process' sandbox tier: rlimits and a clean environment only, "
                    "no filesystem or network isolation. Use docker or bwrap in production.")
        precompile_python_shim(sys.executable)

    def create(self, profile: Profile) -> Sandbox:
        return ProcessSandbox(profile, self.callback_dir)
