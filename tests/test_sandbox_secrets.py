"""Each sandbox's runtime secret and socket stay the server's: never on a command line or in a container's
environment, and its folders reachable by the server only (issue 15.8)."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx.sandbox import Profile, Tier, choose_tier, tier_problems
from alyx.sandbox.tiers import Sandbox


@pytest.fixture(params=["process", "bwrap", "docker"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    problem = tier_problems(request.param)
    if problem:
        pytest.fail(f"sandbox tier {request.param} cannot run here: {problem} (run scripts/provision.sh)")
    tier: Tier = choose_tier(request.param)
    sb = tier.create(Profile("python"))
    try:
        sb.start()
        yield sb
    finally:
        sb.stop()
        tier.close()


def _command_lines() -> Iterator[bytes]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield (entry / "cmdline").read_bytes()
            except OSError:
                continue


def test_the_secret_is_on_no_command_line_and_in_no_container_config(sandbox: Sandbox) -> None:
    assert sandbox.client.request("GET", "/__rt/health").status == 200
    secret = sandbox.secret.encode()
    assert not [line for line in _command_lines() if secret in line]
    container = getattr(sandbox, "container", None)
    if container is not None:
        container.reload()
        assert not [e for e in container.attrs["Config"]["Env"] if sandbox.secret in e]


def test_sandbox_folders_are_the_servers_only(sandbox: Sandbox) -> None:
    work = os.stat(sandbox.workdir)
    assert work.st_uid == os.geteuid() and stat.S_IMODE(work.st_mode) == 0o700
    sock = os.stat(sandbox.workdir / "sock")
    if sandbox.tier != "docker":  # the runtime runs as the server's own uid (bwrap maps it to 65534 inside)
        assert sock.st_uid == os.geteuid() and stat.S_IMODE(sock.st_mode) == 0o700
    else:  # the container runs as 65534: its socket folder is its own, nobody else's
        assert (sock.st_uid, stat.S_IMODE(sock.st_mode)) == ((65534, 0o700) if os.geteuid() == 0 else
                                                               (os.geteuid(), 0o777))
