"""The command line writing into a pipe its reader closed (``alpcrun status | head -1``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT, Grid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ALPCRUN = [sys.executable, "-m", "alpcrun.cli.main"]


def into_closed_pipe(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cmd`` with stdout a pipe whose read end is closed before it writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            cmd,
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr.decode(errors="replace")


def test_config_show_into_a_closed_pipe_ends_quietly():
    """`alpcrun config show | head -1` exits 141 with nothing on stderr."""
    code, err = into_closed_pipe(
        [*ALPCRUN, "config", "show", "--process", "worker"], env={"ALPCRUNCH_CONFIG": ""}
    )
    assert (code, err) == (141, "")


@pytest.mark.parametrize(
    "cmd",
    [
        [*ALPCRUN, "--help"],
        [*ALPCRUN, "worker", "--help"],
        [sys.executable, "-m", "workers_sdk", "--help"],
    ],
    ids=["alpcrun --help", "alpcrun worker --help", "python -m workers_sdk --help"],
)
def test_help_into_a_closed_pipe_ends_quietly(cmd: list[str]):
    """`--help | head -1` ends without a traceback (argparse drops its own write error: 0)."""
    code, err = into_closed_pipe(cmd)
    assert (code, err) in ((0, ""), (141, ""))


def test_status_into_a_closed_pipe_ends_quietly(grid: Grid):
    """`alpcrun status | head -1` against a live queue manager exits 141 without a traceback."""
    grid.start_queue_manager()
    code, err = into_closed_pipe(
        [*ALPCRUN, "status", "--queue-manager", grid.address, "--api-key", grid.api_key]
    )
    assert (code, err) == (141, "")
