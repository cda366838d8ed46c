"""``alpcrun central-cache`` and ``alpcrun node-agent`` as real processes: serve, restart, stop."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from alpcrun.cache.client import SharedDataClient
from alpcrun.errors import Unavailable
from alpcrun.proto.channel import insecure_channel

from .conftest import KEY, Grid, free_port, wait_healthy

pytestmark = pytest.mark.e2e


def _start(grid: Grid, *args: str):
    return grid._spawn([sys.executable, "-m", "alpcrun.cli.main", *args])


def test_node_agent_keeps_serving_while_the_central_cache_is_down(grid: Grid):
    cc_port, na_port = free_port(), free_port()
    cc_addr, na_addr = f"127.0.0.1:{cc_port}", f"127.0.0.1:{na_port}"
    central = _start(
        grid,
        "central-cache",
        "--host",
        "127.0.0.1",
        "--port",
        str(cc_port),
        "--metrics-port",
        "0",
        "--max-ttl",
        "60s",
    )
    _start(
        grid,
        "node-agent",
        "--host",
        "127.0.0.1",
        "--port",
        str(na_port),
        "--metrics-port",
        "0",
        "--read-port",
        "off",
        "--cache-size",
        "64MB",
        "--central-cache-addr",
        cc_addr,
    )
    wait_healthy(cc_addr)
    wait_healthy(na_addr)

    async def before() -> bytes:
        async with insecure_channel(cc_addr) as cch, insecure_channel(na_addr) as nch:
            await SharedDataClient(cch, api_key=KEY).set("s", b"m" * (3 << 20))
            await SharedDataClient(cch, api_key=KEY).update("s", b"two", level=2)
            return (await SharedDataClient(nch, api_key=KEY, node=True).get("s", 1)).value

    assert asyncio.run(before()) == b"m" * (3 << 20)
    central.send_signal(signal.SIGTERM)
    assert central.wait(10) == 0, grid.output(central)

    async def after() -> tuple[bytes, BaseException | None]:
        async with insecure_channel(na_addr) as nch:
            node = SharedDataClient(nch, api_key=KEY, node=True)
            hit = (await node.get("s", 1)).value
            try:
                await node.get("s", 2)
            except Unavailable as exc:
                return hit, exc
            return hit, None

    hit, miss = asyncio.run(after())
    assert hit == b"m" * (3 << 20)
    assert isinstance(miss, Unavailable)
