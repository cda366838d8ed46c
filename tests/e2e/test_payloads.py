"""Payloads across real processes: a queue manager, node agents on two "nodes", a worker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from alpcrun import proto
from alpcrun.client import AsyncClient, TaskInput
from alpcrun.config import ClientSettings
from alpcrun.local import LocalGrid
from alpcrun.proto import ErrorReason

from .conftest import Grid, free_port, wait_healthy

pytestmark = pytest.mark.e2e
MiB = 1 << 20
N = 100


def start_node_agent(grid: Grid, node: str) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``alpcrun node-agent`` running the payload store of ``node``."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "alpcrun.cli.main", "node-agent",
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0", "--read-port", "off",
        "--queue-manager", grid.address, "--node", node, "--ram-bytes", "512MB",
        "--disk-dir", str(grid.logdir / f"{node}-disk"),
        "--payload-socket", str(grid.logdir / f"{node}.sock"),
        "--advertise-address", f"127.0.0.1:{port}",
    ]  # fmt: skip
    proc = grid._spawn(cmd)
    wait_healthy(f"127.0.0.1:{port}")
    return proc, str(grid.logdir / f"{node}.sock")


def wait_nodes(qm: str, n: int) -> None:
    """Until ``n`` nodes are registered with the catalog (its usage lists their tiers)."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(qm) as channel:
        stub = proto.PayloadCatalogStub(channel)
        while time.monotonic() < deadline:
            usage = stub.GetPayloadUsage(
                proto.GetPayloadUsageRequest(), metadata=(("api_key", "e2e-key"),), timeout=5
            )
            if len({t.node for t in usage.tiers}) >= n:
                return
            time.sleep(0.1)
    raise AssertionError(f"{n} payload nodes did not register")


async def _run(grid: Grid, kill_n2) -> None:
    settings = ClientSettings(queue_manager=grid.address, api_key=grid.api_key)
    async with AsyncClient(settings=settings) as client, client.session(app_id="pl") as session:
        inputs = [os.urandom(MiB) for _ in range(N)]
        refs = await session.put_many(inputs)
        results = [r async for r in session.map([TaskInput(b"", (r,)) for r in refs], ordered=True)]
        for data, result in zip(inputs, results, strict=True):
            assert result.value().decode() == hashlib.sha256(data).hexdigest()
            (out,) = result.refs
            assert await session.get(out) == data[::-1]
        # the node agent holding some of the inputs dies: tasks that need them are dead-lettered
        kill_n2()
        await asyncio.sleep(4)  # past payload_node_timeout: n2 is lost with its payloads
        results = [r async for r in session.map([TaskInput(b"", (r,)) for r in refs], ordered=True)]
        lost = [r for r in results if not r.ok]
        assert lost, "some inputs lived on n2"
        assert len(lost) < N
        assert all(r.error.reason == ErrorReason.ERROR_REASON_PAYLOAD_LOST for r in lost)


def test_payloads_in_and_out_across_two_nodes_and_a_lost_node(grid: Grid) -> None:
    """100 payloads of 1 MiB out and back, bytes checked; a killed agent's payloads fail fast."""
    grid.env_extra["ALPCRUNCH_QM_PAYLOAD_NODE_TIMEOUT"] = "2s"
    grid.start_queue_manager()
    start_node_agent(grid, "n1")
    n2, _ = start_node_agent(grid, "n2")
    wait_nodes(grid.address, 2)
    grid.env_extra["ALPCRUNCH_WORKER_NODE"] = "n1"
    grid.env_extra["ALPCRUNCH_WORKER_PAYLOAD_SOCKET"] = str(grid.logdir / "n1.sock")
    grid.start_worker("tests.e2e.workers:PayloadWorker")
    grid.wait_workers(1)

    def kill_n2() -> None:
        n2.send_signal(signal.SIGKILL)
        n2.wait(10)

    asyncio.run(_run(grid, kill_n2))


def _cli(grid: Grid, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alpcrun.cli.main", "payload", *args,
         "--queue-manager", grid.address],
        env=grid.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_payload_cli_puts_lists_gets_and_removes(grid: Grid, tmp_path) -> None:
    """alpcrun payload put / ls / stat / get / rm against real processes."""
    grid.start_queue_manager()
    start_node_agent(grid, "n1")
    wait_nodes(grid.address, 1)
    with grpc.insecure_channel(grid.address) as channel:
        session = proto.QueueStub(channel).CreateSession(
            proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="cli")),
            metadata=(("api_key", grid.api_key),),
            timeout=10,
        )
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(100_000))
    put = _cli(grid, "put", str(source), "--session", session.id, "--tier", "disk")
    assert put.returncode == 0, put.stderr
    pid = put.stdout.split()[0]
    listed = _cli(grid, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)["payloads"]
    assert entry["ref"]["payload_id"] == pid
    stat = _cli(grid, "stat", pid)
    assert "n1/disk:ready" in stat.stdout
    out = tmp_path / "out.bin"
    got = _cli(grid, "get", pid, "--out", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == source.read_bytes()
    assert _cli(grid, "rm", pid).returncode == 0
    missing = _cli(grid, "stat", pid)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_a_local_grid_runs_the_payload_store() -> None:
    """alpcrun local's grid: workers and a client on the node read payloads without copying."""

    async def run() -> None:
        async with LocalGrid(workers=1, worker_spec="tests.e2e.workers:PayloadWorker") as g:
            settings = ClientSettings(
                queue_manager=g.address, api_key=g.api_key, node=g.node,
                payload_socket=g.payload_socket,
            )  # fmt: skip
            async with AsyncClient(settings=settings) as client, client.session(
                app_id="local"
            ) as session:
                data = os.urandom(MiB)
                ref = await session.put(data)
                (result,) = [r async for r in session.map([TaskInput(b"", (ref,))])]
                assert result.value().decode() == hashlib.sha256(data).hexdigest()
                async with session.open(result.refs[0]) as view:
                    assert view.zero_copy
                    assert bytes(view.memoryview()) == data[::-1]

    asyncio.run(run())
