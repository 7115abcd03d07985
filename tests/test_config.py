"""alyx.yaml + ALYX_* environment → one typed Config; every mistake is one clear ConfigError."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alyx.config import MASK, load_config, masked_value
from alyx.errors import ConfigError


def project(tmp_path: Path, config: str | None) -> Path:
    if config is not None:
        (tmp_path / "alyx.yaml").write_text(textwrap.dedent(config))
    return tmp_path


def test_defaults_without_a_file(tmp_path):
    config = load_config(tmp_path, env={})
    assert config.project_dir == tmp_path.resolve()
    assert (config.server_host, config.server_port) == ("127.0.0.1", 8080)
    assert config.server_max_body_bytes == 1_048_576
    assert (config.api_default_per_page, config.api_max_per_page) == (30, 500)
    assert config.functions_sandbox == "auto" and config.database_url is None and config.auth_secret is None
    assert config.sqlite_path == tmp_path.resolve() / "data" / "alyx.db"
    assert config.schema_path == tmp_path.resolve() / "schema.yaml"
    assert config.functions_dir == tmp_path.resolve() / "functions"


def test_file_values_and_environment_overrides(tmp_path):
    folder = project(tmp_path, """
        server:
          host: 0.0.0.0
          port: 9000
        database:
          path: other.db
        functions:
          sandbox: process
        """)
    config = load_config(folder, env={})
    assert (config.server_host, config.server_port, config.functions_sandbox) == ("0.0.0.0", 9000, "process")
    assert config.sqlite_path == folder.resolve() / "other.db"
    env = {"ALYX_SERVER_PORT": "9100", "ALYX_DATABASE_URL": "postgresql://u@h/db", "ALYX_FUNCTIONS_SANDBOX": "docker",
           "ALYX_AUTH_SECRET": "s1", "ALYX_SERVER_HOST": "::1"}
    config = load_config(folder, env=env)
    assert (config.server_port, config.functions_sandbox) == (9100, "docker")
    assert config.database_url == "postgresql://u@h/db"
    assert (config.auth_secret, config.server_host) == ("s1", "::1")
    assert config.database_display == "postgresql://u@h/db"


def test_jwt_secret_is_read_and_alyx_auth_secret_wins(tmp_path):
    assert load_config(tmp_path, env={"JWT_SECRET": "j"}).auth_secret == "j"
    assert load_config(tmp_path, env={"JWT_SECRET": "j", "ALYX_AUTH_SECRET": "a"}).auth_secret == "a"


def test_project_dir_from_environment(tmp_path, monkeypatch):
    folder = project(tmp_path, "server:\n  port: 7000\n")
    monkeypatch.chdir("/")
    assert load_config(env={"ALYX_PROJECT_DIR": str(folder)}).server_port == 7000
    with pytest.raises(ConfigError, match="ALYX_PROJECT_DIR"):
        load_config(env={"ALYX_PROJECT_DIR": str(folder / "missing")})


def test_empty_file_and_empty_section_are_fine(tmp_path):
    assert load_config(project(tmp_path, ""), env={}).server_port == 8080
    assert load_config(project(tmp_path, "database:\n  # url: postgresql://...\n"), env={}).server_port == 8080


BAD_FILES = [
    ("server:\n  port: abc\n", ["alyx.yaml:2", "server.port", "expected an integer", "'abc'"]),
    ("server:\n  port: true\n", ["alyx.yaml:2", "server.port", "expected an integer"]),
    ("server:\n  port: 1.5\n", ["alyx.yaml:2", "server.port", "expected an integer"]),
    ("server:\n  port: -1\n", ["alyx.yaml:2", "server.port", "non-negative"]),
    ("server:\n  port: 99999\n", ["alyx.yaml:2", "server.port", "at most 65535"]),
    ("server:\n  host: [a, b]\n", ["alyx.yaml:2", "server.host", "expected a string"]),
    ("server:\n  port: 8080\n  port: 9090\n", ["alyx.yaml:3", "duplicate key 'port'", "line 2"]),
    ("server:\n  prot: 1\n", ["alyx.yaml:2", "unknown key 'server.prot'", "server.port"]),
    ("severs:\n  port: 1\n", ["alyx.yaml:2", "unknown key 'severs.port'"]),
    ("server: 5\n", ["alyx.yaml:1", "server", "expected a mapping"]),
    ("- a\n- b\n", ["alyx.yaml", "expected a mapping"]),
    ("server: [1\n", ["alyx.yaml:2", "not valid YAML"]),
    ("a: b: c\n", ["alyx.yaml:1", "not valid YAML"]),
    ("server:\n  port: !!python/object:os.system x\n", ["alyx.yaml:2", "not valid YAML"]),
    ("functions:\n  sandbox: kvm\n", ["alyx.yaml:2", "functions.sandbox", "auto, docker, bwrap, process", "'kvm'"]),
]


@pytest.mark.parametrize("text,fragments", BAD_FILES, ids=range(len(BAD_FILES)))
def test_bad_file_is_one_clear_config_error(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(project(tmp_path, text), env={})
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("var,value,fragments", [
    ("ALYX_SERVER_PORT", "abc", ["ALYX_SERVER_PORT", "server.port", "expected an integer", "'abc'"]),
    ("ALYX_SERVER_PORT", "80.5", ["ALYX_SERVER_PORT", "expected an integer"]),
    ("ALYX_SERVER_MAX_BODY_BYTES", "1MB", ["ALYX_SERVER_MAX_BODY_BYTES", "server.max_body_bytes"]),
    ("ALYX_FUNCTIONS_SANDBOX", "vm", ["ALYX_FUNCTIONS_SANDBOX", "functions.sandbox", "expected one of"]),
    ("ALYX_API_MAX_PER_PAGE", "-5", ["ALYX_API_MAX_PER_PAGE", "non-negative"]),
])
def test_bad_environment_override_names_the_variable(tmp_path, var, value, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={var: value})
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_environment_override_of_a_bad_file_value_still_reports_the_file(tmp_path):
    folder = project(tmp_path, "server:\n  port: abc\n")
    with pytest.raises(ConfigError, match="alyx.yaml:2"):
        load_config(folder, env={"ALYX_SERVER_PORT": "9000"})


def test_unsupported_database_url_is_a_config_error(tmp_path):
    from alyx.app import create_app

    (tmp_path / "schema.yaml").write_text("")
    with pytest.raises(ConfigError, match="database.url"):
        create_app(load_config(tmp_path, env={"ALYX_DATABASE_URL": "mysql://x@y/z"}))


@pytest.mark.parametrize("url,masked", [
    ("redis://:p@ss@h:6379/0", f"redis://{MASK}@h:6379/0"),  # the password holds an @: drivers split at the last
    ("postgresql://u:p@ss@h/db?sslmode=require", f"postgresql://u:{MASK}@h/db?sslmode=require"),
    ("redis://h:6379/0?password=sekret&db=1", f"redis://h:6379/0?password={MASK}&db=1"),
    ("postgresql://h/db?user=u&password=sekret", f"postgresql://h/db?user=u&password={MASK}"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_masked_urls_keep_no_part_of_a_password(url: str, masked: str) -> None:
    assert masked_value("realtime.broker", url) == masked
