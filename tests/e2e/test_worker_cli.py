"""`python -m workers_sdk` as a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.e2e


def test_help_works_as_a_module():
    """`python -m workers_sdk --help` exits 0 and documents the flags."""
    proc = subprocess.run(
        [sys.executable, "-m", "workers_sdk", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0
    for flag in ("--queue-manager", "--api-key", "--concurrency", "--threads", "--label"):
        assert flag in proc.stdout
