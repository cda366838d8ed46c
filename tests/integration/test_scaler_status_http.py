"""The scaler's status endpoint served over HTTP: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request

import pytest

from alpcrun.proto.metrics_http import HttpLimits
from alpcrun.scaler.policy import Decision, Reason
from alpcrun.scaler.status import ScalerStatus, StatusServer
from alpcrun.testing import FakeClock

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
async def served():
    clock = FakeClock()
    status = ScalerStatus(clock=clock, stale_after_s=10)
    server = StatusServer(status, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield clock, status, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, url)


async def test_http_endpoints_answer_with_the_status(served):
    """/healthz and /readyz answer 200 or 503 with the reason; /metrics the text format."""
    clock, status, base = served
    assert await get(base + "/healthz") == (200, "ok\n")
    assert await get(base + "/readyz") == (503, "no round yet\n")
    status.succeeded(2.0, Decision(1, 2, 2, Reason.SCALE_UP))
    assert await get(base + "/readyz") == (200, "ok\n")
    code, text = await get(base + "/metrics")
    assert code == 200
    assert "alpcrun_scaler_replicas 2.0" in text
    clock.advance(11)
    code, why = await get(base + "/healthz")
    assert code == 503
    assert "no round finished" in why
    assert (await get(base + "/nope"))[0] == 404


async def test_idle_connections_are_closed_after_the_timeout_and_cost_no_thread():
    """The scaler's status endpoint is bounded like every /metrics: idle connections hold no
    thread and are closed after the timeout, and probes are answered meanwhile."""
    status = ScalerStatus(clock=FakeClock(), stale_after_s=10)
    server = StatusServer(
        status, host="127.0.0.1", port=0, limits=HttpLimits(timeout_s=1.0, max_connections=64)
    )
    await server.start()
    threads = threading.active_count()
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(100)]
    try:
        assert await get(f"http://127.0.0.1:{server.port}/healthz") == (200, "ok\n")
        assert threading.active_count() <= threads + 1  # at most the rendering thread

        async def closed(reader: asyncio.StreamReader) -> bool:
            return await asyncio.wait_for(reader.read(), 15) == b""

        assert all(await asyncio.gather(*(closed(r) for r, _ in idle)))
    finally:
        for _, w in idle:
            w.close()
        await server.close()
