"""The Docker tier (placeholder until the engine-backed implementation lands)."""
from __future__ import annotations


def docker_problem() -> str | None:
    return "the docker tier is not implemented yet"
