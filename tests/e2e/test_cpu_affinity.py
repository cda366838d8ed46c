"""cpu_affinity on the real server processes: every thread pinned, bad lists refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLI = [sys.executable, "-m", "alpcrun.cli.main"]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ALPCRUNCH_API_KEY": "k"}
SERVERS = {
    "queue-manager": "ALPCRUNCH_QM_",
    "central-cache": "ALPCRUNCH_CACHE_",
    "node-agent": "ALPCRUNCH_NODE_",
}


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_a_cpu_not_available_exits_2_naming_the_setting(command: str) -> None:
    outside = max(os.sched_getaffinity(0)) + 1
    proc = subprocess.run(
        [*CLI, command, "--port", "0", "--metrics-port", "0", "--cpu-affinity", str(outside)],
        env=ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert f"cpu_affinity ({SERVERS[command]}CPU_AFFINITY): CPU(s) {outside} are not" in err
    assert "Traceback" not in err


def _allowed(pid: int, tid: str) -> str:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    lines = status.splitlines()
    return next(line.split()[1] for line in lines if line.startswith("Cpus_allowed_list"))


def test_every_thread_of_a_pinned_node_agent_runs_on_its_cpu() -> None:
    cpu = max(os.sched_getaffinity(0))
    port = free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "node-agent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--read-port",
            "0",
        ],
        env={**ENV, "ALPCRUNCH_NODE_CPU_AFFINITY": str(cpu)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(f"127.0.0.1:{port}")  # serving: gRPC's threads have all started
        tasks = os.listdir(f"/proc/{proc.pid}/task")
        assert len(tasks) > 1
        assert {_allowed(proc.pid, tid) for tid in tasks} == {str(cpu)}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert f"running on CPU(s) {cpu}" in err.decode()
