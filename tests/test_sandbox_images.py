"""alyx.sandbox.images against the real Docker engine: the runtime images exist, carry the digest of
runtimes/<runtime>/, and a second offline build is a cached no-op that changes nothing."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alyx.sandbox.docker_tier import IMAGES, runtime_digest
from alyx.sandbox.images import BASE_IMAGE, build_runtime_images, rootfs_dir


def inspect(image: str) -> dict[str, Any] | None:
    done = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, timeout=30)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


needs_images = pytest.mark.skipif(not docker_ready(), reason="no Docker engine")


@needs_images
def test_the_runtime_images_are_built_from_the_current_runtimes() -> None:
    for runtime, image in IMAGES.items():
        found = inspect(image)
        assert found is not None, f"{image} is not built: run `python -m alyx runtimes build`"
        assert found["Config"]["Labels"]["alyx.runtime-digest"] == runtime_digest(runtime), image


@needs_images
def test_a_second_offline_build_reuses_the_cache_and_keeps_the_images() -> None:
    before = {image: inspect(image)["Id"] for image in IMAGES.values()}  # type: ignore[index]
    lines: list[str] = []
    assert build_runtime_images("offline", echo=lines.append) == list(IMAGES.values())
    assert lines[0] == f"base: {BASE_IMAGE} present"
    assert lines[1:] == [f"built {image} from {BASE_IMAGE}" for image in IMAGES.values()]
    assert {image: inspect(image)["Id"] for image in IMAGES.values()} == before  # type: ignore[index]


def test_runtime_digest_is_stable_and_differs_per_runtime() -> None:
    digests = {runtime: runtime_digest(runtime) for runtime in IMAGES}
    assert len(set(digests.values())) == len(IMAGES)  # python and node differ
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in digests.values())
    assert runtime_digest("python") == digests["python"]  # stable


def test_the_rootfs_cache_folder_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ALYX_ROOTFS_CACHE", raising=False)
    assert rootfs_dir() == Path("/var/cache/alyx/rootfs-bookworm")
    monkeypatch.setenv("ALYX_ROOTFS_CACHE", str(tmp_path / "rootfs"))
    assert rootfs_dir() == tmp_path / "rootfs"
