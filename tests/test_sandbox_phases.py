"""Where a sandbox's start and bind go (Sandbox.phases, from the runtimes' boot marks), and the Docker
tier's containers created ahead (replenish, create, close), on the real tiers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alyx.sandbox import FunctionRegistry, Profile, Tier, choose_tier, tier_problems
from alyx.sandbox.docker_tier import DockerTier

SOURCES = {"python": ("p.py", "def handler(req, res):\n    return res.json(1)\n"),
           "node": ("n.js", "export default async function handler(req, res) { return res.json(1); }\n"),
           "go": ("g.go", 'package main\n\nimport (\n\t"net/http"\n\n\t"github.com/watzon/alyx/pkg/runtime"\n)\n\n'
                  'func Handle(w http.ResponseWriter, r *http.Request) { runtime.JSON(w, 200, 1) }\n')}
# The bind's own phases, from the runtime's marks in its /__rt/init answer (docs/functions.md).
BIND_PHASES = {"python": {"send", "import", "answer", "output"}, "node": {"send", "import", "answer", "output"},
               "go": {"send", "handover", "runtime", "answer", "output"}}


def tier_named(name: str) -> Tier:
    problem = tier_problems(name)
    if problem:
        pytest.fail(f"sandbox tier {name} cannot run here: {problem} (run scripts/provision.sh)")
    return choose_tier(name)


@pytest.mark.parametrize("runtime", ["python", "node", "go"])
@pytest.mark.parametrize("tier_name", ["process", "bwrap", "docker"])
def test_a_start_and_a_bind_report_their_phases(tmp_path: Path, tier_name: str, runtime: str) -> None:
    filename, text = SOURCES[runtime]
    (tmp_path / filename).write_text(text)
    spec = FunctionRegistry(tmp_path, {}).get(filename.split(".")[0])
    tier = tier_named(tier_name)
    sandbox = tier.create(Profile(runtime))
    try:
        sandbox.start()
        boot = sandbox.client.request("GET", "/__rt/health").json()["boot"]
        assert boot["main"] <= boot["imported"] <= boot["listening"]  # the runtime's own marks, in order
        sandbox.init(spec, 30)
        phases = sandbox.phases
        expected = {"prepare", "boot", "imports", "listen", "ready", "start", "copy", "init", "load"}
        expected |= BIND_PHASES[runtime]
        expected |= {"start_api"} if tier_name == "docker" else {"spawn"}
        expected |= {"exec"} if runtime in ("node", "go") else set()
        assert expected <= set(phases), phases
        assert all(value >= 0 for value in phases.values()), phases
        assert phases["init"] >= phases["send"] + phases["answer"], phases  # parts of the one round trip
        assert json.loads(sandbox.invoke("GET", "/", [], b"", 30).body) == 1
        assert json.loads(sandbox.invoke("GET", "/", [], b"", 30).body) == 1  # the kept connection serves on
    finally:
        sandbox.stop()
        tier.close()


def test_docker_keeps_a_container_created_ahead_per_profile_and_removes_it_on_close() -> None:
    import docker

    tier = tier_named("docker")
    assert isinstance(tier, DockerTier)
    profile = Profile("python")
    first = tier.create(profile)  # a profile's first start creates its own container
    try:
        assert tier.stocked(profile) == 0
        tier.replenish()
        assert tier.stocked(profile) == 1
        ahead = tier.create(profile)
        assert tier.stocked(profile) == 0 and ahead.container_id  # type: ignore[attr-defined]
        ahead.start()  # a start of the container created ahead: no create on its path
        assert "created_ahead" in ahead.phases and "create" not in ahead.phases
        assert ahead.client.request("GET", "/__rt/health").status == 200
        ahead.stop()
        tier.replenish()
        assert tier.stocked(profile) == 1
    finally:
        first.stop()
        tier.close()
    assert tier.stocked(profile) == 0
    owned = {"label": [f"alyx.owner={tier.owner_id}"]}
    assert docker.from_env().containers.list(all=True, sparse=True, filters=owned) == []
