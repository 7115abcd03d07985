"""Builds the runtime images from runtimes/*/Dockerfile: from a registry's base image where one is
reachable, else offline from a local base (a debootstrap rootfs imported with `docker import`).

Cached and idempotent: the rootfs, the base image and Docker's layer cache are reused, so a second
run takes seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alyx.sandbox import golang
from alyx.sandbox.docker_tier import IMAGES, docker_client, runtime_digest
from alyx.sandbox.tiers import RUNTIMES_DIR

BASE_IMAGE = "alyx/base:bookworm"
ROOTFS_PACKAGES = "python3,nodejs"
ROOTFS_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
               "var/lib/apt/lists")


class BuildError(Exception):
    """An image could not be built; the message says what to install or run."""


def rootfs_dir() -> Path:
    return Path(os.environ.get("ALYX_ROOTFS_CACHE", "/var/cache/alyx/rootfs-bookworm"))


def _ensure_rootfs(echo: Callable[[str], None]) -> Path:
    target = rootfs_dir()
    if (target / ".alyx-complete").exists():
        echo(f"rootfs: cached at {target}")
        return target
    if not shutil.which("debootstrap"):
        raise BuildError("offline build needs debootstrap (apt-get install debootstrap) to make a base rootfs")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root: run `python -m alyx runtimes build` as root once")
    mirror = os.environ.get("ALYX_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    echo(f"rootfs: debootstrap --variant=minbase --include={ROOTFS_PACKAGES} bookworm {partial} {mirror}")
    done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={ROOTFS_PACKAGES}", "bookworm",
                           str(partial), mirror], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"debootstrap failed: {(done.stderr or done.stdout)[-2000:]}")
    for rel in ROOTFS_TRIM:
        shutil.rmtree(partial / rel, ignore_errors=True)
    (partial / ".alyx-complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _ensure_base(client: Any, echo: Callable[[str], None]) -> None:
    try:
        client.images.get(BASE_IMAGE)
        echo(f"base: {BASE_IMAGE} present")
        return
    except Exception:  # noqa: BLE001 - not there: make it
        pass
    rootfs = _ensure_rootfs(echo)
    echo(f"base: importing {rootfs} as {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--exclude=./.alyx-complete", "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        repository, tag = BASE_IMAGE.split(":")
        client.api.import_image(src=tar.stdout, repository=repository, tag=tag, stream_src=True)
    finally:
        tar.stdout.close()
        tar.wait()
    client.images.get(BASE_IMAGE)


def _build(client: Any, runtime: str, base: str | None) -> None:
    args = {"BASE": base} if base else {}
    if runtime != "go":
        _build_from(client, runtime, RUNTIMES_DIR / runtime, args)
        return
    # The Go image holds the static loader, compiled here first: its context is the Dockerfile and the binary.
    try:
        loader = golang.loader_binary()
    except golang.GoUnavailable as exc:
        raise BuildError(f"{IMAGES[runtime]}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="alyx-go-image-") as context:
        shutil.copyfile(RUNTIMES_DIR / runtime / "Dockerfile", Path(context) / "Dockerfile")
        shutil.copy2(loader, Path(context) / loader.name)
        _build_from(client, runtime, Path(context), args)


def _build_from(client: Any, runtime: str, context: Path, args: dict[str, str]) -> None:
    client.images.build(path=str(context), tag=IMAGES[runtime], buildargs=args, rm=True,
                        forcerm=True, pull=False, labels={"alyx.runtime-digest": runtime_digest(runtime)})


def build_runtime_images(mode: str = "auto", echo: Callable[[str], None] = print) -> list[str]:
    """Build every runtime image; mode is auto (registry if reachable, else offline), online or offline."""
    try:
        client = docker_client()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        raise BuildError(f"no Docker engine reachable: {exc}") from None
    offline = mode == "offline"
    if mode in ("auto", "online"):
        try:
            for runtime in IMAGES:
                _build(client, runtime, None)
            echo("built from the registry's base images")
            return list(IMAGES.values())
        except Exception as exc:  # noqa: BLE001 - typically: no registry reachable
            if mode == "online":
                raise BuildError(f"online build failed: {exc}") from None
            echo(f"no registry base image ({str(exc).splitlines()[0][:160]}); building offline")
            offline = True
    if offline:
        _ensure_base(client, echo)
        built = []
        for runtime in IMAGES:
            try:
                _build(client, runtime, BASE_IMAGE)
            except BuildError as exc:  # only Go's can fail this way (no toolchain): Python and Node still run
                echo(f"skipped {exc}")
                continue
            built.append(IMAGES[runtime])
            echo(f"built {IMAGES[runtime]} from {BASE_IMAGE}")
        return built
    return list(IMAGES.values())
