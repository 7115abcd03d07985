"""Builds the runtime images from runtimes/*/Dockerfile: from a registry's base image where one is
reachable, else offline from a local base (a debootstrap rootfs imported with `docker import`).

Cached and idempotent: the rootfs, the base image and Docker's layer cache are reused, so a second
run takes seconds.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from alyx.sandbox import golang
from alyx.sandbox.docker_tier import IMAGES, docker_client, runtime_digest, runtime_image
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
    image, _logs = client.images.build(path=str(context), tag=IMAGES[runtime], buildargs=args, rm=True, forcerm=True,
                                       pull=False, labels={"alyx.runtime-digest": runtime_digest(runtime)})
    repository, tag = runtime_image(runtime).rsplit(":", 1)
    image.tag(repository, tag)  # this checkout's own tag, beside :latest (see runtime_image)


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


# --- The Alyx server image (the Dockerfile at the repository root) --------------------------------

APP_IMAGE = "alyx/alyx:latest"
APP_ALIASES = ("ghcr.io/watzon/alyx:latest",)  # the name the README's compose file and `docker run` use
APP_FILES = ("Dockerfile", "requirements.txt", "wsgi.py", "gunicorn.conf.py", "alyx", "runtimes", "static",
             "deploy/docker-entrypoint.py")
VENDOR = "deploy/vendor"  # site-packages for an offline build; the Dockerfile pip-installs when it is empty


def source_root() -> Path:
    """The checkout the image is built from (holding the Dockerfile): the parent of RUNTIMES_DIR."""
    return RUNTIMES_DIR.parent


def _requirements(root: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in (root / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def wheel_cache() -> Path:
    return Path(os.environ.get("ALYX_WHEEL_CACHE", "/var/cache/alyx/wheels"))


def target_python(client: Any, base: str) -> str:
    """The Python version of the base image (markers such as python_full_version < "3.11.3" follow it)."""
    out = client.containers.run(base, ["python3", "-c", "import platform; print(platform.python_version())"],
                                remove=True, network_mode="none")
    return str(out.decode().strip())


def installed_closure(root: Path, python: str) -> tuple[list[metadata.Distribution], list[Requirement]]:
    """The installed distributions requirements.txt needs for a target Python (extras and markers
    followed), and the requirements not installed here (a marker true there but not here)."""
    found: dict[str, metadata.Distribution] = {}
    missing: dict[str, Requirement] = {}
    env = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    todo = _requirements(root)
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in found or key in missing:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing[key] = req
            continue
        found[key] = dist
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker and not any(dep.marker.evaluate({**env, "extra": e}) for e in ("", *req.extras)):
                continue
            todo.append(dep)
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower()), list(missing.values())


def _fetch_wheels(missing: list[Requirement], python: str, echo: Callable[[str], None]) -> list[Path]:
    """Wheels for requirements not installed here: from the wheel cache, else `pip download` into it once."""
    cache = wheel_cache()
    cache.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for req in missing:
        stem = req.name.lower().replace("-", "_")
        have = [w for w in sorted(cache.glob("*.whl")) if w.name.lower().startswith(stem + "-")
                and req.specifier.contains(w.name.split("-")[1], prereleases=True)]
        if not have:
            echo(f"vendor: {req} is needed by Python {python} but not installed here: pip download into {cache}")
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                   "--python-version", python, "--dest", str(cache), f"{req.name}{req.specifier}"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"offline build needs a wheel of {req} for Python {python} in {cache} "
                                 f"(pip download failed: {(done.stderr or done.stdout)[-500:]})")
            have = [w for w in sorted(cache.glob("*.whl")) if w.name.lower().startswith(stem + "-")]
            if not have:
                raise BuildError(f"pip download of {req} left no wheel in {cache}")
        wheels.append(have[-1])
    return wheels


def _source_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in APP_FILES:
        path = root / name
        if path.is_file():
            files.append(path)
        else:
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)
    return files


def app_digest(root: Path, dists: list[metadata.Distribution], base: str, wheels: list[Path]) -> str:
    """A hash of everything the image is made of: sources, base image name, package versions."""
    digest = hashlib.sha256(base.encode() + b"\0" + "\0".join(w.name for w in wheels).encode())
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in dists:
        digest.update(f"{dist.metadata['Name']}=={dist.version}\0".encode())
    return digest.hexdigest()[:16]


def _copy_dist(dist: metadata.Distribution, target: Path) -> None:
    """A distribution's installed files (its RECORD), those inside site-packages, into target."""
    site = Path(str(dist.locate_file("")))
    for rel in dist.files or []:
        src = Path(str(dist.locate_file(rel)))
        if ".." in rel.parts or not src.is_file():
            continue  # console scripts and data outside site-packages: the image runs `python3 -m`
        dest = target / src.relative_to(site)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def _context(root: Path, dists: list[metadata.Distribution], wheels: list[Path], into: Path) -> None:
    for path in _source_files(root):
        dest = into / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    vendor = into / VENDOR
    vendor.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        _copy_dist(dist, vendor)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(vendor)


def build_app_image(mode: str = "auto", echo: Callable[[str], None] = print, force: bool = False) -> str:
    """Build the Alyx image from the root Dockerfile; mode as for the runtimes. Cached by input hash.

    online: the registry's python base, pip installs requirements.txt. offline: the local debootstrap
    base (as the runtime images), with the packages installed here (this interpreter's site-packages,
    same CPython minor version as Debian bookworm's) copied in: no index needed.
    """
    try:
        client = docker_client()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        raise BuildError(f"no Docker engine reachable: {exc}") from None
    root = source_root()
    if not (root / "Dockerfile").is_file():
        raise BuildError(f"no Dockerfile in {root}: build from a checkout of Alyx")
    attempts: list[tuple[str, str | None]] = [("online", None)] if mode == "online" else []
    if mode == "auto":
        attempts.append(("online", None))
    if mode in ("auto", "offline"):
        attempts.append(("offline", BASE_IMAGE))
    plans: list[tuple[str, str | None, list[metadata.Distribution], list[Path]]] = []
    for how, base in attempts:
        dists: list[metadata.Distribution] = []
        wheels: list[Path] = []
        if base:
            _ensure_base(client, echo)
            python = target_python(client, base)
            dists, missing = installed_closure(root, python)
            wheels = _fetch_wheels(missing, python, echo)
        plans.append((how, base, dists, wheels))
    digests = [app_digest(root, dists, base or "registry", wheels) for _how, base, dists, wheels in plans]
    current = next((d for d in digests if _current(client, d)), None)
    if current and not force:
        echo(f"{APP_IMAGE}: up to date ({current})")
        return APP_IMAGE
    for (how, base, dists, wheels), digest in zip(plans, digests, strict=True):
        with tempfile.TemporaryDirectory(prefix="alyx-image-") as tmp:
            if base:
                _context(root, dists, wheels, Path(tmp))
            try:
                image, _logs = client.images.build(
                    path=str(Path(tmp)) if base else str(root), tag=APP_IMAGE, buildargs={"BASE": base} if base else {},
                    rm=True, forcerm=True, pull=False, labels={"alyx.build-digest": digest})
            except Exception as exc:  # noqa: BLE001 - typically: no registry reachable
                if how == "online" and mode == "auto":
                    echo(f"no registry base image ({str(exc).splitlines()[0][:160]}); building offline")
                    continue
                raise BuildError(f"{how} build of {APP_IMAGE} failed: {exc}") from None
        for alias in APP_ALIASES:
            repository, tag = alias.rsplit(":", 1)
            image.tag(repository, tag)
        echo(f"built {APP_IMAGE} ({how}, {digest}); also tagged {', '.join(APP_ALIASES)}")
        return APP_IMAGE
    raise BuildError("no build mode left to try")


def _current(client: Any, digest: str) -> bool:
    try:
        labels = client.images.get(APP_IMAGE).labels or {}
    except Exception:  # noqa: BLE001 - not built yet
        return False
    return bool(labels.get("alyx.build-digest") == digest)
