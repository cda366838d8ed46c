"""End to end over TLS: the real queue manager and worker processes, configured by environment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings
from tests.pki import Pki, make_pki

from .conftest import ROOT, Grid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _wait_healthy_tls(address: str, ca: Path, proc: subprocess.Popen[bytes]) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    deadline = time.monotonic() + 30
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"TLS queue manager at {address} not healthy")


async def test_job_runs_on_a_tls_queue_manager_process_with_tls_workers(grid: Grid, pki: Pki):
    """`alpcrun queue-manager` and two `alpcrun worker`s configured by TLS env run a job."""
    grid.env_extra.update(pki.env("ALPCRUNCH_QM_", server=True))
    grid.env_extra.update(pki.env("ALPCRUNCH_WORKER_", server=False))
    grid.env_extra.update(pki.env("ALPCRUNCH_CLIENT_", server=False))
    qm = grid._spawn(
        [
            sys.executable,
            "-m",
            "alpcrun.cli.main",
            "queue-manager",
            "--host",
            "127.0.0.1",
            "--port",
            str(grid.port),
            "--metrics-port",
            "0",
        ]
    )
    _wait_healthy_tls(grid.address, pki.ca_cert, qm)
    grid.start_worker("tests.e2e.workers:EchoWorker")
    grid.start_worker("tests.e2e.workers:EchoWorker")
    settings = ClientSettings(
        queue_manager=grid.address,
        api_key=grid.api_key,  # type: ignore[arg-type]
        **pki.client(),  # type: ignore[arg-type]
    )
    async with AsyncClient(settings=settings) as client, client.session(app_id="tls") as s:
        results = {r.index: r.payload async for r in s.map(f"t{i}".encode() for i in range(500))}
    assert results == {i: f"t{i}".encode()[::-1] for i in range(500)}

    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "alpcrun.cli.main", "status", "--queue-manager", grid.address],
        env=grid.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr.decode()
    assert "completed" in status.stdout.decode()
    assert "TLS" in grid.output(qm)


@pytest.mark.parametrize("process", ["queue-manager", "worker"])
def test_a_missing_certificate_file_exits_2_naming_the_setting(tmp_path: Path, process: str):
    """A TLS file that is not there ends the process at start with exit 2 and one clear line."""
    missing = tmp_path / "nope.crt"
    if process == "queue-manager":
        args = ["queue-manager", "--port", "0", "--metrics-port", "0", "--tls"]
        args += ["--tls-cert", str(missing), "--tls-key", str(missing)]
        expected = f"tls_cert (ALPCRUNCH_QM_TLS_CERT): cannot read {missing}"
    else:
        args = ["worker", "tests.e2e.workers:EchoWorker", "--tls", "--ca-cert", str(missing)]
        expected = f"ca_cert (ALPCRUNCH_WORKER_CA_CERT): cannot read {missing}"
    proc = subprocess.run(
        [sys.executable, "-m", "alpcrun.cli.main", *args],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ALPCRUNCH_API_KEY": "k"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert expected in err
    assert "Traceback" not in err
