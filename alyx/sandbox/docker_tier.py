"""The Docker tier: one warm container per sandbox, talking over a Unix socket in a bind-mounted folder.

Containers get no network (unless the manifest asks), memory/CPU/pids limits, a read-only root with a
tmpfs /tmp, user 65534 and no capabilities. The engine must share the host's filesystem with this
process (the socket and code folders are bind mounts): a local engine, not a remote DOCKER_HOST.

When Alyx itself runs in a container with the host's docker.sock (the compose deployment), the engine
resolves bind-mount sources on the host, not in Alyx's container: HostPaths translates each folder
through Alyx's own mounts (the image keeps sandbox folders on the volume /app/run, via TMPDIR), so
sibling sandboxes mount the same files and sockets.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from alyx.background import spawn
from alyx.sandbox.protocol import RuntimeGone
from alyx.sandbox.tiers import (
    OOM_SIGNS,
    RUNTIMES_DIR,
    SECRET_FILE,
    ExitInfo,
    Profile,
    Sandbox,
    Tier,
    node_heap_mb,
    runtime_env,
)

log = logging.getLogger("alyx.sandbox")

IMAGES = {"python": "alyx/runtime-python:latest", "node": "alyx/runtime-node:latest", "go": "alyx/runtime-go:latest"}
REQUIRED = ("python", "node")  # the tier runs without the Go image; Go functions then say to build it
LABEL = "alyx.sandbox"
CONTAINER_UID = 65534  # containers run as nobody
POOL_SIZE = 64  # the SDK's default of 10 connections starves concurrent greenlets (STACK.md)
_client_lock = threading.Lock()
_clients: dict[int | None, Any] = {}


def docker_client(timeout: int | None = 60) -> Any:
    """A shared Docker SDK client per process (DOCKER_HOST or the local socket) and read timeout."""
    import docker

    with _client_lock:
        client = _clients.get(timeout)
        if client is None:
            client = _clients[timeout] = docker.DockerClient(
                base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=timeout,
                max_pool_size=POOL_SIZE)
        return client


def runtime_digest(runtime: str) -> str:
    """A hash of runtimes/<runtime>/ (shim and Dockerfile), stamped on the image as label alyx.runtime-digest."""
    digest = hashlib.sha256()
    root = RUNTIMES_DIR / runtime
    for path in sorted(root.rglob("*")):  # runtimes/go is a module with folders; the others are flat
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def runtime_image(runtime: str) -> str:
    """The image of this checkout's runtime: IMAGES' name tagged with runtime_digest (checkouts with
    different shims on one engine each find their own; `:latest` is whichever was built last)."""
    return f"{IMAGES[runtime].rsplit(':', 1)[0]}:{runtime_digest(runtime)}"


def image_problem(client: Any, runtime: str) -> str | None:
    """None when this checkout's image of the runtime is here (built from the current runtimes/<runtime>/)."""
    try:
        client.images.get(runtime_image(runtime))
    except Exception:  # noqa: BLE001
        return (f"runtime image {runtime_image(runtime)} (runtimes/{runtime}/ as it is now) missing: "
                "run `python -m alyx runtimes build`")
    return None


def docker_problem() -> str | None:
    """None when a Docker engine and the Python and Node images are here, else why not (Go's: at create)."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker Python package is not installed (pip install -r requirements.txt)"
    try:
        client = docker_client()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine to use
        return f"no Docker engine reachable ({type(exc).__name__}: {str(exc)[:200]})"
    missing, stale = [], []
    for runtime in REQUIRED:
        image = IMAGES[runtime]
        try:
            client.images.get(runtime_image(runtime))
        except Exception:  # noqa: BLE001
            try:
                client.images.get(image)
                stale.append(image)
            except Exception:  # noqa: BLE001
                missing.append(image)
    if missing:
        return f"runtime image(s) {', '.join(missing)} missing: run `python -m alyx runtimes build`"
    if stale:
        return f"runtime image(s) {', '.join(stale)} older than runtimes/: run `python -m alyx runtimes build`"
    return None


CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")


def own_container_id() -> str | None:
    """This process's container id when it runs in a Docker container, else None."""
    if not Path("/.dockerenv").exists():
        return None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            match = CONTAINER_ID.search(line)  # /etc/hostname etc. come from the container's folder
            if match:
                return match.group(1)
    except OSError:
        pass
    return socket.gethostname()


class HostPaths:
    """Paths of this process's filesystem as the Docker engine's host sees them (for bind mounts)."""

    def __init__(self, client: Any) -> None:
        self.mounts: list[tuple[str, str]] = []  # (destination here, source on the engine's host)
        self.container = own_container_id()
        if self.container is None:
            return
        try:
            attrs = client.containers.get(self.container).attrs
        except Exception:  # noqa: BLE001 - not one of this engine's containers: it shares our filesystem
            self.container = None
            return
        self.mounts = sorted(((m["Destination"], m["Source"]) for m in attrs.get("Mounts", [])
                              if m.get("Source")), key=lambda m: -len(m[0]))

    def __call__(self, path: Path | str) -> str:
        path = os.path.realpath(path)
        if self.container is None:
            return path
        for dest, source in self.mounts:
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                return source + path[len(dest.rstrip("/")):]
        raise RuntimeGone(f"{path} is not on a volume of Alyx's container, so sibling sandbox containers "
                          "cannot mount it: keep TMPDIR on a volume (the image uses /app/run)")


def _running(pid: int) -> bool:
    """Is there a live (not zombie) process with this pid on this host?"""
    try:
        status = open(f"/proc/{pid}/status", encoding="ascii", errors="replace").read()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class DockerSandbox(Sandbox):
    """One container running a runtime shim."""

    tier = "docker"

    def __init__(self, profile: Profile, owner: DockerTier) -> None:
        super().__init__(profile, owner.callback_dir)
        self.owner = owner
        self.container: Any = None
        self.container_id: str | None = None
        self._exited = threading.Event()

    @property
    def code_dir(self) -> str:
        return "/code"

    def _own_socket_dir(self, path: Path) -> None:
        """The container runs as 65534: its socket folder is its own (0700) when the server can give it
        away (root); otherwise 0777, reachable through the server's 0700 work folder only."""
        if os.geteuid() == 0:
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
            os.chmod(path, 0o700)
        else:
            os.chmod(path, 0o777)

    def create_container(self) -> None:
        """Create (not start) this sandbox's container; DockerTier keeps one so made ahead per profile."""
        profile = self.profile
        env = {"ALYX_SOCKET": "/run/alyx/rt.sock", "ALYX_SECRET_FILE": SECRET_FILE, "HOME": "/tmp", "LANG": "C.UTF-8",
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        host = self.owner.host_path
        volumes = {host(self.workdir / "sock"): {"bind": "/run/alyx", "mode": "rw"},
                   host(self.workdir / "code"): {"bind": "/code", "mode": "ro"},
                   host(self.workdir / "secret"): {"bind": "/run/alyx-secret", "mode": "ro"}}
        if self.callback_dir:
            volumes[host(self.callback_dir)] = {"bind": "/run/alyx-api", "mode": "ro"}
            env["ALYX_API_SOCKET"] = "/run/alyx-api/api.sock"
        if profile.runtime == "node":
            env["NODE_OPTIONS"] = f"--max-old-space-size={node_heap_mb(profile.memory)}"
        env.update(runtime_env(profile))
        began = time.perf_counter()
        api = self.owner.client.api
        host_config = api.create_host_config(
            binds=volumes, network_mode="bridge" if profile.network else "none",
            mem_limit=f"{profile.memory}m", memswap_limit=f"{profile.memory}m", nano_cpus=int(profile.cpu * 1e9),
            pids_limit=128, read_only=True, tmpfs={"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], ipc_mode="private")
        with self._lifecycle:  # stop() during a launch must not miss the container being created
            if self.stopped:
                raise RuntimeGone("stopped before start")
            # The engine's API as it is (the SDK's containers.create would inspect the container after).
            created = api.create_container(
                self.owner.images[profile.runtime], environment=env, user=f"{CONTAINER_UID}:{CONTAINER_UID}",
                host_config=host_config, volumes=[v["bind"] for v in volumes.values()],
                labels={LABEL: "1", "alyx.owner": self.owner.owner_id, "alyx.host": socket.gethostname(),
                        "alyx.pid": str(os.getpid()), "alyx.runtime": profile.runtime})
            self.container_id = created["Id"]
            self.container = self.owner.client.containers.prepare_model({"Id": self.container_id})
        self.phases["create"] = round((time.perf_counter() - began) * 1000, 3)
        began = time.perf_counter()
        # Attached before the start, as `docker run` does, so no output is missed (the end marks of /init
        # can come within a millisecond of the start). The stream lives as long as the container: on a
        # client without a read timeout, or an idle container would look dead after the SDK's 60 s.
        stream = self.owner.stream_client.api.attach(self.container_id, stdout=True, stderr=True, stream=True,
                                                     logs=False, demux=True)
        self.phases["attach"] = round((time.perf_counter() - began) * 1000, 3)
        spawn(self._pump, stream, name=f"alyx-sandbox-{self.id}-io")

    def _launch(self) -> None:
        if self.container is None:
            self.create_container()
        else:  # created (and attached) ahead, off this start's path
            self.phases["created_ahead"] = self.phases.pop("create", 0.0) + self.phases.pop("attach", 0.0)
        began = time.perf_counter()
        self.exec_at = time.time()
        self.owner.client.api.start(self.container_id)
        self.phases["start_api"] = round((time.perf_counter() - began) * 1000, 3)

    def _pump(self, stream: Any) -> None:
        # Docker frames do not align with lines: StreamCapture buffers and splits them.
        try:
            for out, err in stream:
                if out:
                    self.stdout.feed(out)
                if err:
                    self.stderr.feed(err)
        except Exception:  # noqa: BLE001 - the stream ends however the container ends
            pass
        finally:
            self._exited.set()
            self.stdout.close()
            self.stderr.close()

    def alive(self) -> bool:
        return self.container is not None and not self._exited.is_set() and not self.stopped

    def exit_info(self, wait: float = 0.0) -> ExitInfo:
        if self.container is None:
            return ExitInfo(None)
        self._exited.wait(wait)
        try:
            self.container.reload()
            state = self.container.attrs.get("State", {})
        except Exception:  # noqa: BLE001 - removed already
            state = {}
        code = state.get("ExitCode") if not state.get("Running") else None
        tail = self.stderr.tail_text()
        oom = bool(state.get("OOMKilled")) or any(sign in tail for sign in OOM_SIGNS)
        return ExitInfo(code, oom, tail[-2000:])

    def _kill(self) -> None:
        with self._lifecycle:
            if self.container is None:
                return
        try:
            self.container.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - already gone is fine
            if "No such container" not in str(exc) and "is already in progress" not in str(exc):
                raise
        self._exited.wait(2.0)

    def stats(self) -> dict[str, Any]:
        info = super().stats()
        info["container"] = (self.container_id or "")[:12]
        return info


class DockerTier(Tier):
    """Warm containers on the local Docker engine."""

    name = "docker"

    def __init__(self) -> None:
        problem = docker_problem()
        if problem:
            raise RuntimeGone(problem)
        self.client = docker_client()
        self.stream_client = docker_client(timeout=None)  # log streams: no read timeout
        self.host_path = HostPaths(self.client)
        self.images = {runtime: runtime_image(runtime) for runtime in IMAGES}
        self.owner_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._optional: dict[str, str | None] = {}
        self._stock: dict[Profile, list[DockerSandbox]] = {}  # containers created, not started (replenish)
        self._stock_lock = threading.Lock()
        self._closed = False
        self._remove_orphans()

    def create(self, profile: Profile) -> Sandbox:
        """A sandbox for the profile: a container created ahead when one is in stock (`docker start` is
        then all a start costs), else a new one; `replenish` stocks one again, off the call's path."""
        if profile.runtime not in IMAGES:
            raise RuntimeGone(f"no Docker image for runtime {profile.runtime!r}")
        if profile.runtime not in REQUIRED:  # checked once per tier: images do not change under a server
            if profile.runtime not in self._optional:
                self._optional[profile.runtime] = image_problem(self.client, profile.runtime)
            problem = self._optional[profile.runtime]
            if problem:
                raise RuntimeGone(problem)
        with self._stock_lock:
            self._stock.setdefault(profile, [])
            stocked = self._stock[profile]
            if stocked:
                return stocked.pop()
        return DockerSandbox(profile, self)

    def stocked(self, profile: Profile) -> int:
        """How many containers are created ahead for this profile."""
        with self._stock_lock:
            return len(self._stock.get(profile, []))

    def replenish(self) -> None:
        """Create one container ahead (not started: no process, no memory) for each profile started so far."""
        with self._stock_lock:
            empty = [profile for profile, stocked in self._stock.items() if not stocked]
        for profile in empty:
            sandbox = DockerSandbox(profile, self)
            try:
                sandbox.create_container()
            except Exception as exc:  # noqa: BLE001 - the next start creates its own; try again later
                log.warning("could not create a %s container ahead: %s", profile.runtime, exc)
                sandbox.stop()
                continue
            with self._stock_lock:
                if not self._closed:
                    self._stock[profile].append(sandbox)
                    continue
            sandbox.stop()

    def close(self) -> None:
        """Remove the containers created ahead (the manager stops the sandboxes it started)."""
        with self._stock_lock:
            self._closed = True
            stocked = [sb for ready in self._stock.values() for sb in ready]
            self._stock.clear()
        for sandbox in stocked:
            sandbox.stop()

    def _remove_orphans(self) -> None:
        """Containers left by an Alyx process of this host that no longer exists (killed with -9)."""
        try:
            here = {"label": [LABEL, f"alyx.host={socket.gethostname()}"]}
            # sparse: no inspect per container, which fails the whole list when another server removes one
            containers = self.client.containers.list(all=True, sparse=True, filters=here)
        except Exception:  # noqa: BLE001 - best effort
            return
        for container in containers:
            pid = (container.attrs.get("Labels") or {}).get("alyx.pid", "")
            if pid.isdigit() and not _running(int(pid)):
                log.info("removing orphaned sandbox container %s of pid %s", container.short_id, pid)
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
