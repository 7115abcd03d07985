"""The bubblewrap tier: a sandbox in new user, pid, ipc, uts (and network) namespaces.

The runtime runs as the server's uid mapped to 65534, sees a read-only /usr and only its /code, /tmp
(tmpfs) and socket folder, with the process tier's rlimits, clean environment and pre-bound socket.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from alyx.sandbox.protocol import RuntimeGone
from alyx.sandbox.tiers import (
    RUNTIMES_DIR,
    SECRET_FILE,
    SHIMS,
    ProcessSandbox,
    Profile,
    Sandbox,
    Tier,
    base_env,
    interpreter,
    node_heap_mb,
    precompile_python_shim,
    python_command,
    runtime_env,
)

BWRAP_PYTHON = "/usr/bin/python3"  # bwrap sandboxes see the system's /usr only


def _bwrap_binds() -> list[str]:
    args: list[str] = []
    for path in ("/usr", "/etc/alternatives", "/etc/ssl", "/etc/ca-certificates"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for link, target in (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/sbin", "usr/sbin")):
        if os.path.islink(link):
            args += ["--symlink", target, link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    return args


class BwrapSandbox(ProcessSandbox):
    """A bubblewrap sandbox: new user, pid, ipc, uts and network namespaces, read-only system binds."""

    tier = "bwrap"

    def _command(self) -> list[str]:
        runtime = self.profile.runtime
        binary = BWRAP_PYTHON if runtime == "python" else shutil.which("node") or "/usr/bin/node"
        runtime_dir = RUNTIMES_DIR / runtime
        if runtime == "go":  # the static loader, built on the host, is the whole runtime
            binary = interpreter("go")
            runtime_dir = Path(binary).parent
        if not os.path.exists(binary):
            raise RuntimeGone(f"the bwrap tier needs {binary}")
        args = ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--uid", "65534", "--gid", "65534", "--hostname", "sandbox", "--cap-drop", "ALL",
                *_bwrap_binds(),
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--ro-bind", str(runtime_dir), "/opt/alyx",
                "--ro-bind", str(self.workdir / "code"), "/code",
                "--bind", str(self.workdir / "sock"), "/run/alyx",
                "--ro-bind", str(self.workdir / "secret"), "/run/alyx-secret",
                "--chdir", "/tmp", "--clearenv"]
        if not self.profile.network:
            args.append("--unshare-net")
        extra = {"ALYX_SOCKET": "/run/alyx/rt.sock", "ALYX_LISTEN_FD": str(self.listen_fd),
                 "ALYX_SECRET_FILE": SECRET_FILE, "ALYX_LIFELINE": "stdin", **runtime_env(self.profile)}
        if self.callback_dir:
            args += ["--ro-bind", str(self.callback_dir), "/run/alyx-api"]
            extra["ALYX_API_SOCKET"] = "/run/alyx-api/api.sock"
        for k, v in base_env(extra).items():
            args += ["--setenv", k, v]
        shim = "/opt/alyx/" + SHIMS[runtime].split("/", 1)[1]
        if runtime == "python":
            return [*args, "--", *python_command(binary, "/opt/alyx")]
        if runtime == "go":
            return [*args, "--", shim]
        return [*args, "--", binary, f"--max-old-space-size={node_heap_mb(self.profile.memory)}", shim]

    @property
    def code_dir(self) -> str:
        return "/code"


class BwrapTier(Tier):
    """Unprivileged namespaces via bubblewrap: no network, read-only system, only /code and a socket."""

    name = "bwrap"

    def __init__(self) -> None:
        problem = bwrap_problem()
        if problem:
            raise RuntimeError(problem)
        precompile_python_shim(BWRAP_PYTHON)

    def create(self, profile: Profile) -> Sandbox:
        return BwrapSandbox(profile, self.callback_dir)


def bwrap_problem() -> str | None:
    """None when bubblewrap can run a sandbox here, else why not."""
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    try:
        done = subprocess.run(["bwrap", "--unshare-user", "--unshare-net", "--unshare-pid", *_bwrap_binds(),
                               "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if done.returncode != 0:
        return f"bwrap cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None
