"""The `python -m workers_sdk` command line: argument parsing and worker loading."""

from __future__ import annotations

import logging
import sys

import pytest

from alpcrun.errors import ConfigError
from workers_sdk.cli import load_worker_class, main


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """main() configures the root logger; put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder holding `myworkers.py`, as the current directory."""
    (tmp_path / "myworkers.py").write_text(
        "from workers_sdk import Worker\n"
        "class Echo(Worker):\n"
        "    def handle(self, task):\n"
        "        return task.payload\n"
        "class Base(Worker, abstract=True):\n"
        "    pass\n"
        "class NotAWorker:\n"
        "    pass\n"
        "value = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("myworkers", None)


def test_missing_module_exits_nonzero_with_message(capsys):
    """An unknown module gives exit code 2 and names the module."""
    assert main(["nonexistent_mod_xyz:X"]) == 2
    err = capsys.readouterr().err
    assert "cannot import worker module 'nonexistent_mod_xyz'" in err


def test_missing_class_is_reported(project, capsys):
    """A module without the class gives exit code 2 and names the attribute."""
    assert main(["myworkers:Missing"]) == 2
    assert "has no attribute 'Missing'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["NotAWorker", "value"])
def test_non_worker_is_reported(project, capsys, name):
    """A class or object that is not a Worker subclass is refused."""
    assert main([f"myworkers:{name}"]) == 2
    assert "is not a workers_sdk.Worker subclass" in capsys.readouterr().err


def test_abstract_worker_is_refused(project):
    """A worker base declared abstract cannot be run."""
    with pytest.raises(ConfigError, match="abstract"):
        load_worker_class("myworkers:Base")


def test_class_is_loaded_from_the_current_directory(project):
    """MODULE:CLASS is imported from the project folder (cwd put on sys.path)."""
    cls = load_worker_class("myworkers:Echo")
    assert cls.__name__ == "Echo"
    assert str(project) in sys.path


@pytest.mark.parametrize("spec", ["no_colon", ":X", "mod:"])
def test_malformed_spec_is_refused(spec, capsys):
    """A spec that is not MODULE:CLASS gives exit code 2 and shows the expected form."""
    assert main([spec]) == 2
    assert "expected MODULE:CLASS" in capsys.readouterr().err


def test_bad_label_is_refused(capsys):
    """--label without '=' is a usage error."""
    assert main(["x:Y", "--label", "gpu"]) == 2
    assert "--label takes KEY=VALUE" in capsys.readouterr().err


def test_invalid_setting_is_refused(capsys):
    """--concurrency 0 fails validation with a readable message."""
    assert main(["x:Y", "--concurrency", "0"]) == 2
    assert "concurrency" in capsys.readouterr().err
