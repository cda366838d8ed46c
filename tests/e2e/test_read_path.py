"""The node agent's read path with real processes: workers use it, and it survives restarts."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile

import pytest

from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.read_client import NodeReadClient
from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings
from alpcrun.errors import Unavailable
from alpcrun.local import LocalGrid
from alpcrun.proto.channel import insecure_channel

from .conftest import KEY, Grid, free_port, wait_healthy

pytestmark = pytest.mark.e2e


async def test_local_grid_workers_read_shared_data_on_the_read_path():
    """Worker processes of `alpcrun local` get shared data through the read path, not gRPC."""
    async with LocalGrid(workers=2, worker_spec="tests.e2e.workers:SharedEchoWorker") as grid:
        agent = grid.node_agent
        assert agent is not None
        assert agent.read_server is not None
        settings = ClientSettings(central_cache=grid.central_cache.address)
        async with (
            AsyncClient(grid.address, api_key=grid.api_key, settings=settings) as client,
            client.session(app_id="read-path") as session,
        ):
            await session.set_shared_data(b"market:")
            payloads = [f"{i}".encode() for i in range(40)]
            results = [r async for r in session.map(payloads)]
        assert sorted(r.payload for r in results) == sorted(b"market:" + p for p in payloads)
        requests = agent.read_server.service.requests
        assert 1 <= requests <= 2  # once per worker process that ran a task (memoised)
        assert agent.cache is not None
        lru = agent.cache.statistics().lru
        assert lru.hits + lru.misses == requests  # every node lookup came on the read path


def _node_agent(grid: Grid, port: int, read_port: int, sock: str, central: str):
    args = ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]
    args += ["--read-port", str(read_port), "--read-socket", sock]
    args += ["--central-cache-addr", central]
    return grid._spawn([sys.executable, "-m", "alpcrun.cli.main", "node-agent", *args])


def _central(grid: Grid, port: int):
    args = ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]
    return grid._spawn([sys.executable, "-m", "alpcrun.cli.main", "central-cache", *args])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def test_read_path_outlives_the_central_cache_and_reconnects_after_a_node_agent_restart(
    grid: Grid,
):
    cc_port, na_port, read_port = free_port(), free_port(), free_port()
    cc_addr, na_addr = f"127.0.0.1:{cc_port}", f"127.0.0.1:{na_port}"
    sock = f"{tempfile.mkdtemp(dir='/tmp')}/read.sock"
    value = bytes(range(256)) * 8192  # 2 MiB: several chunks

    def start() -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        procs = _central(grid, cc_port), _node_agent(grid, na_port, read_port, sock, cc_addr)
        wait_healthy(cc_addr)
        wait_healthy(na_addr)
        return procs

    async def upload() -> None:
        async with insecure_channel(cc_addr) as channel:
            central_client = SharedDataClient(channel, api_key=KEY)
            await central_client.set("s", value)
            await central_client.update("s", b"two", level=2)

    central, agent = start()
    await upload()
    tcp = NodeReadClient(f"127.0.0.1:{read_port}", api_key=KEY)
    unix = NodeReadClient(f"unix:{sock}", api_key=KEY)
    assert (await tcp.get("s", 1)).value == value  # fetched from the central cache
    assert (await unix.get("s", 1)).value == value  # a hit

    _kill(central)
    assert (await tcp.get("s", 1)).value == value  # the node still serves what it holds
    with pytest.raises(Unavailable):
        await unix.get("s", 2)  # never fetched: needs the central cache

    _kill(agent)
    with pytest.raises(Unavailable):
        await tcp.get("s", 1)

    central, agent = start()
    await upload()  # a restarted central cache starts empty
    assert (await tcp.get("s", 2)).value == b"two"  # the same client, on a new connection
    assert (await unix.get("s", 1)).value == value
    await tcp.aclose()
    await unix.aclose()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0, grid.output(agent)
