"""What `alyx generate` does: schema.yaml → the files of one client or the SDK, written or checked."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alyx.generate import golang, python, sdk, typescript
from alyx.generate.model import Project, project_model
from alyx.generate.output import Files, stale, write
from alyx.schema import load_schema

LANGUAGES: dict[str, Callable[[Project], Files]] = {"typescript": typescript.generate, "go": golang.generate,
                                                    "python": python.generate}


@dataclass(frozen=True)
class Outcome:
    """What a run did: the files written (or, with check, the stale ones) and the schema hash."""

    paths: list[str]
    schema_hash: str
    checked: bool

    @property
    def ok(self) -> bool:
        return not (self.checked and self.paths)


def client_files(schema_path: Path, lang: str) -> tuple[Files, str]:
    project = project_model(load_schema(schema_path))
    return LANGUAGES[lang](project), project.schema_hash


def sdk_files(schema_path: Path) -> tuple[Files, str]:
    project = project_model(load_schema(schema_path))
    return sdk.generate(project), project.schema_hash


def apply(files: Files, schema_hash: str, out: Path, check: bool) -> Outcome:
    """Write ``files`` under ``out``, or (``check``) list the ones that are missing or differ."""
    return Outcome(stale(out, files) if check else write(out, files), schema_hash, check)
