"""Line-aware YAML for Alyx's own files (alyx.yaml, schema.yaml, manifest.yaml): load, check, ${VAR}.

``load_yaml`` gives safe YAML whose mappings remember their lines; ``Reader`` checks what was
loaded and raises one error reading ``<file>:<line>: <where>: <message>``. Nothing here knows
which file it reads.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import yaml

from alyx.errors import ConfigError

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KIND_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
              list: "a list", dict: "a mapping"}


class Located(dict[Any, Any]):
    """A loaded mapping that knows its line and the line of each of its keys (0: unknown)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[Any, int] = {}


class LineLoader(yaml.SafeLoader):
    """A safe loader that remembers where each mapping and key came from, and refuses duplicate keys."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> Located:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    mapping = Located(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = seen
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, path: str) -> Any:
    """Safe YAML whose mappings remember their lines (``.line``, ``.key_lines``); any problem,
    duplicate keys included, is a ConfigError naming the file and line."""
    try:
        return yaml.load(text, Loader=LineLoader)  # noqa: S506 - LineLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}") from None


def line_of(node: Any, key: Any = None) -> int:
    """The line of ``key`` in a loaded mapping (of the mapping itself without a key); 0 when unknown."""
    if not isinstance(node, Located):
        return 0
    return node.key_lines.get(key, node.line) if key is not None else node.line


def describe(value: Any) -> str:
    """A value as an error message names it: ``nothing``, ``a list``, ``str 'soon'``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def expand_env(value: Any, environ: Mapping[str, str]) -> str:
    """``${VAR}`` in a config value → the variable's value ("" when unset)."""
    return ENV_REF.sub(lambda m: environ.get(m.group(1), ""), "" if value is None else str(value))


class Reader:
    """Walks loaded YAML and raises ``error("<path>:<line>: <where>: <message>")`` at the first problem."""

    def __init__(self, path: str, error: Callable[[str], Exception] = ConfigError) -> None:
        self.path = path
        self.error = error

    def fail(self, node: Any, where: str, message: str, key: Any = None) -> NoReturn:
        line = line_of(node, key)
        prefix = f"{self.path}:{line}" if line else self.path
        raise self.error(f"{prefix}: {where}: {message}")

    def mapping(self, node: Any, where: str, allowed: set[str], parent: Any = None,
                key: Any = None) -> dict[Any, Any]:
        """``node`` as a mapping with only ``allowed`` keys (``parent``/``key``: where it sits, for the line)."""
        if not isinstance(node, dict):
            self.fail(parent, where, f"expected a mapping, got {describe(node)}", key=key)
        unknown = sorted(str(k) for k in node if k not in allowed)
        if unknown:
            self.fail(node, where, f"unknown key {unknown[0]!r} (expected one of: {', '.join(sorted(allowed))})",
                      key=unknown[0])
        return node

    def get(self, node: Mapping[Any, Any], key: str, where: str, kinds: tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        if key not in node:
            if required:
                self.fail(node, where, f"missing required key {key!r}")
            return default
        value = node[key]
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            expected = " or ".join(KIND_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(node, f"{where}.{key}", f"expected {expected}, got {describe(value)}", key=key)
        return value
