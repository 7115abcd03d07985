"""alyx.yamlfile: line-aware YAML, the Reader's file:line errors and ${VAR} expansion."""
from __future__ import annotations

import pytest

from alyx.errors import ConfigError
from alyx.yamlfile import Located, Reader, describe, expand_env, line_of, load_yaml


def test_mappings_remember_their_lines_and_keys() -> None:
    data = load_yaml("a: 1\nb:\n  c: 2\n  d: [1, 2]\n", "x.yaml")
    assert isinstance(data, Located) and data.line == 1 and data.key_lines == {"a": 1, "b": 2}
    assert line_of(data["b"]) == 3 and line_of(data["b"], "d") == 4 and line_of(data, "missing") == 1
    assert line_of({"plain": 1}, "plain") == 0


@pytest.mark.parametrize("text, expected", [
    ("a: 1\na: 2\n", "x.yaml:2: not valid YAML: duplicate key 'a' (first on line 1)"),
    ("a: [1\n", "x.yaml:2: not valid YAML"),
    ("a: !!python/object:os.system x\n", "x.yaml:1: not valid YAML"),
])
def test_bad_yaml_names_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "x.yaml")
    assert str(info.value).startswith(expected)


def test_reader_errors_carry_file_line_and_where() -> None:
    data = load_yaml("top:\n  name: 5\n  other: x\n", "f.yaml")
    reader = Reader("f.yaml")
    with pytest.raises(ConfigError, match=r"^f\.yaml:3: top: unknown key 'other' \(expected one of: name\)$"):
        reader.mapping(data["top"], "top", {"name"})
    with pytest.raises(ConfigError, match=r"^f\.yaml:2: top\.name: expected a string, got int 5$"):
        reader.get(data["top"], "name", "top", (str,))
    with pytest.raises(ConfigError, match=r"^f\.yaml:1: top level: expected a mapping, got a list$"):
        reader.mapping([1], "top level", set(), parent=data, key="top")
    with pytest.raises(ConfigError, match=r"^f\.yaml: x: no line$"):
        reader.fail(None, "x", "no line")


def test_reader_raises_the_error_type_it_is_given() -> None:
    with pytest.raises(ValueError, match="^label: x: boom$"):
        Reader("label", ValueError).fail({}, "x", "boom")


def test_describe_and_expand_env() -> None:
    assert [describe(v) for v in (None, True, {}, [], "s", 1.5)] == [
        "nothing", "boolean True", "a mapping", "a list", "str 's'", "float 1.5"]
    assert expand_env("https://${HOST}/${MISSING}x", {"HOST": "h"}) == "https://h/x"
    assert expand_env(None, {}) == "" and expand_env(5, {}) == "5"
