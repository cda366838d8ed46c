"""``api_key_file``: the API key read from a file, at the precedence of where the file was given."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from alpcrun.cli.main import build_parser
from alpcrun.config import (
    CentralCacheSettings,
    ClientSettings,
    QueueManagerSettings,
    WorkerSettings,
    load_settings,
)
from alpcrun.errors import ConfigError
from workers_sdk.cli import _parser as worker_parser


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPCRUNCH_API_KEY", "ALPCRUNCH_API_KEY_FILE", "ALPCRUNCH_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def _file(tmp_path: Path, text: str, name: str = "key") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


@pytest.mark.parametrize("text", ["s3cret\n", "s3cret\r\n", "s3cret"])
@pytest.mark.parametrize("cls", [QueueManagerSettings, WorkerSettings, ClientSettings])
def test_the_key_is_read_from_the_file_without_its_newline(tmp_path, cls, text):
    """Every process's settings read the key from the file, its trailing newline dropped, and
    show the file's path but never the key."""
    path = _file(tmp_path, text)
    settings = load_settings(cls, api_key_file=path)
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"
    shown = settings.masked()
    assert (shown["api_key"], shown["api_key_file"]) == ("********", path)


def test_the_environment_and_the_yaml_file_can_name_it(tmp_path, monkeypatch):
    """ALPCRUNCH_API_KEY_FILE and a YAML ``api_key_file`` key work like the flag."""
    monkeypatch.setenv("ALPCRUNCH_API_KEY_FILE", _file(tmp_path, "from-env\n"))
    assert load_settings(ClientSettings).api_key.get_secret_value() == "from-env"
    monkeypatch.delenv("ALPCRUNCH_API_KEY_FILE")
    yaml = tmp_path / "alpcrun.yaml"
    yaml.write_text(f"api_key_file: {_file(tmp_path, 'from-yaml', 'k2')}\n")
    settings = load_settings(CentralCacheSettings, config_file=yaml)
    assert settings.api_key.get_secret_value() == "from-yaml"


def test_a_key_file_takes_the_precedence_of_where_it_was_given(tmp_path, monkeypatch):
    """Flags beat the environment and the environment the YAML file, whether each gives a key
    or a key file."""
    yaml = tmp_path / "alpcrun.yaml"
    yaml.write_text("api_key: from-yaml\n")
    monkeypatch.setenv("ALPCRUNCH_API_KEY", "from-env")
    flag_file = _file(tmp_path, "from-flag-file\n")
    by_flag_file = load_settings(ClientSettings, config_file=yaml, api_key_file=flag_file)
    assert by_flag_file.api_key.get_secret_value() == "from-flag-file"
    monkeypatch.delenv("ALPCRUNCH_API_KEY")
    monkeypatch.setenv("ALPCRUNCH_API_KEY_FILE", _file(tmp_path, "from-env-file\n", "k2"))
    from_env = load_settings(ClientSettings, config_file=yaml)
    assert from_env.api_key.get_secret_value() == "from-env-file"
    by_flag = load_settings(ClientSettings, config_file=yaml, api_key="from-flag")
    assert by_flag.api_key.get_secret_value() == "from-flag"


def test_a_key_and_a_key_file_in_the_same_place_are_refused(tmp_path, monkeypatch):
    """Two keys given at the same level (both flags, or both variables) are an error naming
    both settings, rather than one silently winning."""
    path = _file(tmp_path, "k\n")
    with pytest.raises(ConfigError, match=r"both api_key and api_key_file .* are set"):
        load_settings(ClientSettings, api_key="k", api_key_file=path)
    monkeypatch.setenv("ALPCRUNCH_API_KEY", "k")
    monkeypatch.setenv("ALPCRUNCH_API_KEY_FILE", path)
    with pytest.raises(ConfigError, match="ALPCRUNCH_API_KEY_FILE"):
        load_settings(WorkerSettings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read api_key_file .*: No such file or directory"),
        ("", "api_key_file .* is empty"),
        ("\n\n", "api_key_file .* is empty"),
        ("one\ntwo\n", "api_key_file .* holds more than one line"),
        (" padded\n", "api_key_file .*printable ASCII without leading or trailing spaces"),
        ("clé\n", "api_key_file .*printable ASCII"),
        (b"\xff\xfe", "api_key_file .* is not UTF-8 text"),
    ],
    ids=["missing", "empty", "only newlines", "two lines", "padded", "not ASCII", "not UTF-8"],
)
def test_an_unusable_key_file_is_an_error_naming_it(tmp_path, text, message):
    """A key file that is missing, empty, of several lines or not sendable as gRPC metadata
    stops the settings with a ConfigError naming the file."""
    path = tmp_path / "key"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(QueueManagerSettings, api_key_file=str(path))
    assert str(path) in str(info.value)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand parser by its name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update(_subcommands(sub))
    return found


def test_every_command_that_takes_a_key_takes_a_key_file_and_says_to_prefer_it():
    """Each alpcrun subcommand (and the worker) with --api-key also has --api-key-file, and
    --api-key's help says to prefer the file or the environment."""
    parsers = {**_subcommands(build_parser()), "worker": worker_parser()}
    with_key = {}
    for name, parser in parsers.items():
        options = {o: a for a in parser._actions for o in a.option_strings}
        if "--api-key" in options:
            with_key[name] = options
    assert {"queue-manager", "central-cache", "node-agent", "worker", "status"} <= set(with_key)
    assert {"list", "local", "demo", "scaler", "show"} <= set(with_key)
    for name, options in with_key.items():
        assert "--api-key-file" in options, name
        help_text = " ".join((options["--api-key"].help or "").split())
        assert "prefer --api-key-file or the environment" in help_text, name
