"""`pip install .` and `pip install -e .` into a fresh venv give an `alyx` command that works from any folder.

The wheel is built from a copy of the working tree with the shared venv's setuptools (no network, no
build isolation) and installed with --no-deps; the fresh venv reaches the dependencies through a .pth
file naming the shared venv's site-packages. Then, from another folder, the quick start: `alyx --help`,
`alyx init myproject`, `alyx admin create`, and `alyx dev` in the project (health, a record created and
listed, the realtime client from static/, a Python function run by a shim from runtimes/).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, TEST_ENV, free_port

PASSWORD = "correct horse battery staple"
HELLO_PY = 'def handler(req, res):\n    return res.json({"message": "Hello from Python!"})\n'


@dataclass
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self) -> dict[str, str]:
        """A user's shell with this venv activated: its bin/ first on PATH, nothing of the checkout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALYX_", "PYTHON", "FLASK_"))}
        env.update({**TEST_ENV, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(self.path)})
        return env

    def run(self, *args: str, cwd: Path, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=cwd, env=self.env(), input=input, capture_output=True, text=True,
                              timeout=timeout)


def copy_tree(target: Path) -> Path:
    """The working tree's files (tracked and new, not ignored) copied to `target`, as a clone would have them."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    target.mkdir(parents=True)
    archive = target.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            if (ROOT / name).exists():
                tar.add(ROOT / name, arcname=name, recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    return target


def fresh_venv(path: Path) -> Venv:
    """A new venv without pip; a .pth file lends it the shared venv's packages (the dependencies, pip)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    venv = Venv(path)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(venv.bin / "python"), "-c", code], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "zz_shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def pip(venv: Venv, *args: str, cwd: Path) -> None:
    result = venv.run(str(venv.bin / "python"), "-m", "pip", "--disable-pip-version-check", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """`pip install .` of a copy of the working tree into a fresh venv."""
    base = tmp_path_factory.mktemp("install")
    source = copy_tree(base / "src")
    venv = fresh_venv(base / "venv")
    pip(venv, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "dist"), str(source),
        cwd=base)
    wheel = next((base / "dist").glob("alyx-*.whl"))
    pip(venv, "install", "--no-deps", "--no-index", str(wheel), cwd=base)
    return venv


def where_alyx_is(venv: Venv, cwd: Path) -> list[str]:
    code = ("import alyx; from alyx.resources import resource_dir; "
            "print(alyx.__file__); print(resource_dir('runtimes')); print(resource_dir('static'))")
    result = venv.run(str(venv.bin / "python"), "-c", code, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_installed_package_carries_runtimes_static_and_the_scaffold(installed: Venv, tmp_path: Path) -> None:
    package, runtimes, static = where_alyx_is(installed, tmp_path)
    assert package.startswith(str(installed.path)), package  # the installed copy, not the checkout
    assert runtimes.startswith(str(installed.path)) and static.startswith(str(installed.path))
    for shim in ("python/shim.py", "node/shim.js", "python/Dockerfile", "node/Dockerfile"):
        assert (Path(runtimes) / shim).is_file(), shim
    assert (Path(static) / "alyx-realtime.js").is_file()
    assert (Path(package).parent / "scaffold" / "schema.yaml").is_file()


def test_quick_start_with_the_installed_command(installed: Venv, tmp_path: Path) -> None:
    helped = installed.run("alyx", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert all(command in helped.stdout for command in ("init", "dev", "migrate", "admin"))

    created = installed.run("alyx", "init", "myproject", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "Next: cd myproject && alyx dev" in created.stdout
    project = tmp_path / "myproject"
    with (project / "alyx.yaml").open("a") as config:
        config.write("functions:\n  sandbox: process\n")
    (project / "functions" / "hello.py").write_text(HELLO_PY)

    same = installed.run("python", "-m", "alyx", "--version", cwd=project)
    assert same.returncode == 0 and same.stdout.startswith("alyx "), same.stderr
    admin = installed.run("alyx", "admin", "create", "ada@example.com", "--password-stdin", cwd=project,
                          input=PASSWORD + "\n")
    assert admin.returncode == 0 and "Admin ada@example.com ready" in admin.stdout, admin.stderr

    with dev_server(installed, project) as url:
        health = requests.get(url + "/api/health", timeout=5).json()
        assert health["status"] == "ok" and health["collections"] == ["posts", "users"]
        tokens = requests.post(url + "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD},
                               timeout=10).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = requests.get(url + "/api/auth/me", headers=auth, timeout=5).json()
        post = requests.post(url + "/api/collections/posts", headers=auth, timeout=10,
                             json={"title": "Hello", "author": me["id"], "status": "published"})
        assert post.status_code == 201, post.text
        listed = requests.get(url + "/api/collections/posts", timeout=5).json()
        assert [item["title"] for item in listed["items"]] == ["Hello"]
        assert requests.get(url + "/_static/alyx-realtime.js", timeout=5).status_code == 200
        hello = requests.get(url + "/api/functions/hello", timeout=60)
        assert hello.status_code == 200 and hello.json() == {"message": "Hello from Python!"}, hello.text


def test_editable_install_uses_the_checkout_folders(tmp_path: Path) -> None:
    source = copy_tree(tmp_path / "src")
    venv = fresh_venv(tmp_path / "venv")
    pip(venv, "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(source), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package, runtimes, static = where_alyx_is(venv, elsewhere)
    assert package == str(source / "alyx" / "__init__.py")
    assert runtimes == str(source / "runtimes") and static == str(source / "static")
    version = venv.run("alyx", "--version", cwd=elsewhere)
    assert version.returncode == 0 and version.stdout.startswith("alyx "), version.stderr
    assert venv.run("alyx", "init", "proj", cwd=elsewhere).returncode == 0
    with dev_server(venv, elsewhere / "proj", ("python", "-m", "alyx")) as url:
        assert requests.get(url + "/api/health", timeout=5).json()["collections"] == ["posts", "users"]


@contextmanager
def dev_server(venv: Venv, project: Path, command: tuple[str, ...] = ("alyx",)) -> Iterator[str]:
    """`alyx dev --port P` (or `command` dev) started in `project`, as a user would, from its folder; stopped
    with SIGTERM."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = project / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*command, "dev", "--port", str(port)], cwd=project, env=venv.env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, f"alyx dev did not answer /api/health:\n{log.read_text()}"
            try:
                if requests.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


def test_the_package_requires_every_library_requirements_txt_pins() -> None:
    """`pip install .` alone must bring what the code imports: requirements.txt lists exactly that, so each
    of its names is in setup.cfg's install_requires (the installs above borrow the shared venv's packages,
    so they cannot see a missing one: Pillow was, and `alyx dev` failed at its first import)."""
    import configparser
    import re

    def name(line: str) -> str:
        return re.split(r"[=<>~!\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    required = {name(line) for line in config["options"]["install_requires"].splitlines() if line.strip()}
    pinned = {name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")}
    assert pinned - required == set(), f"in requirements.txt but not installed by `pip install .`: {pinned - required}"
