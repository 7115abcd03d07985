"""The Alyx image's entrypoint: drop from root to user alyx, run the command, clean sandboxes up after.

Started as root only to (1) join the group that owns /var/run/docker.sock (its gid differs from host
to host, so it cannot be baked in), (2) own the volumes /app/data and /app/run. The command (gunicorn)
then runs as alyx with no capabilities. SIGTERM/SIGINT are forwarded; when the command has exited,
every sandbox container this container started (label alyx.host = our hostname) is removed, so
`docker-compose down` leaves none behind, even if a worker was killed before its own clean-up.
"""
from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys

USER = "alyx"
DOCKER_SOCKET = "/var/run/docker.sock"
OWNED = ("/app/data", "/app/run")


def _own_volumes(uid: int, gid: int) -> None:
    for top in OWNED:
        os.makedirs(top, exist_ok=True)
        if os.stat(top).st_uid == uid:
            continue
        for folder, dirs, files in os.walk(top):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, uid, gid)


def _demote(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def _remove_sandboxes() -> None:
    try:
        import docker

        client = docker.DockerClient(base_url=f"unix://{DOCKER_SOCKET}", timeout=20)
        mine = {"label": ["alyx.sandbox", f"alyx.host={socket.gethostname()}"]}
        for container in client.containers.list(all=True, filters=mine):
            container.remove(force=True)
    except Exception as exc:  # noqa: BLE001 - no engine, nothing to clean
        sys.stderr.write(f"alyx entrypoint: sandbox clean-up skipped: {exc}\n")


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("alyx entrypoint: no command\n")
        return 2
    demote = None
    if os.geteuid() == 0:
        user = pwd.getpwnam(USER)
        groups = [user.pw_gid]
        if os.path.exists(DOCKER_SOCKET):
            groups.append(os.stat(DOCKER_SOCKET).st_gid)
        _own_volumes(user.pw_uid, user.pw_gid)
        os.environ["HOME"] = user.pw_dir
        demote = (user.pw_uid, user.pw_gid, groups)
    child = subprocess.Popen(argv, preexec_fn=(lambda: _demote(*demote)) if demote else None)  # noqa: PLW1509
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.path.exists(DOCKER_SOCKET):
        _remove_sandboxes()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
