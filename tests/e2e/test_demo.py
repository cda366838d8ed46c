"""``alpcrun demo``, the README's first command, as a real process: its summary and its cleanup."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import Grid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

OPTIONS, CHUNKS = 20, 20


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _summary(out: str) -> dict[str, str]:
    """The ``name: value`` lines of the demo's summary."""
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^([A-Za-z ()-]+):\s+(.+)$", out, flags=re.MULTILINE)
    }


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (the demo and all it started)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() not in environ.read_bytes():
                continue
            state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(environ.parent.name))
    return found


def test_demo_prices_the_portfolio_and_leaves_no_process_behind(grid: Grid):
    """`alpcrun demo` exits 0 with all tasks done, MC near Black-Scholes, no process left."""
    marker = f"alpcrun-demo-test-{uuid.uuid4().hex}"
    grid.env_extra["ALPCRUNCH_TEST_MARKER"] = marker
    proc = grid._spawn(
        [
            sys.executable,
            "-m",
            "alpcrun.cli.main",
            "demo",
            "--workers",
            "2",
            "--options",
            str(OPTIONS),
            "--chunks",
            str(CHUNKS),
            "--paths",
            "2000",
        ]
    )
    # The marker is seen where it is set. Popen returns once the child's exec is under way, a
    # moment before the kernel exposes its new environment in /proc: look again until it does.
    deadline = time.monotonic() + 10
    while proc.pid not in _processes_with(marker):
        assert time.monotonic() < deadline, "the demo's environment never showed the marker"
        time.sleep(0.01)
    assert proc.wait(90) == 0, grid.output(proc)
    out = grid.output(proc)
    assert "Traceback" not in out
    summary = _summary(out)
    assert summary["tasks"] == f"{OPTIONS * CHUNKS} (0 failed)"
    mc, _, stderr = summary["portfolio (MC)"].partition(" ± ")
    analytic = _number(summary["portfolio (Black-Scholes)"])
    assert _number(stderr) > 0
    assert abs(_number(mc) - analytic) <= 4 * _number(stderr), summary
    assert _number(summary["throughput"].split()[0]) > 0
    assert _number(summary["worst option deviation"].split()[0]) < 5, summary

    deadline = time.monotonic() + 10
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []
