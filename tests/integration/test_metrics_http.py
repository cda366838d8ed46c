"""The servers' /metrics endpoints over real HTTP: scrapes never fail while the core changes,
and idle or half-sent connections are bounded and timed out."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc.aio
import pytest

from alpcrun import proto
from alpcrun.queue_manager import QueueManager
from alpcrun.testing import running_central_cache, running_node_agent, running_queue_manager

from .checks import MD, eventually, qm_settings
from .wire import ManualWorker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def scrape(port: int | None, path: str = "/metrics") -> tuple[int, str]:
    """GET ``path`` of the metrics endpoint: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@asynccontextmanager
async def queue_manager(**overrides: Any) -> AsyncIterator[tuple[QueueManager, grpc.aio.Channel]]:
    """A queue manager with a metrics endpoint on a free port, and a channel to it."""
    async with running_queue_manager(**qm_settings(metrics_port=0, **overrides)) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            yield qm, channel


async def create(queue: proto.QueueStub, n: int) -> list[str]:
    """Create ``n`` sessions, 50 at a time; their ids."""
    ids: list[str] = []
    for start in range(0, n, 50):
        replies = await asyncio.gather(
            *(
                queue.CreateSession(
                    proto.CreateSessionRequest(
                        attributes=proto.SessionAttributes(app_id="churn", tags=[f"t{i}"])
                    ),
                    metadata=MD,
                )
                for i in range(start, min(n, start + 50))
            )
        )
        ids.extend(r.id for r in replies)
    return ids


async def churn(channel: grpc.aio.Channel, stop: asyncio.Event, most: int) -> int:
    """Create and close sessions and register and drop workers until ``stop`` (or ``most``
    sessions were made); the sessions created."""
    queue = proto.QueueStub(channel)
    live: list[str] = []
    workers: list[ManualWorker] = []
    made = 0
    try:
        while not stop.is_set() and made < most:
            live.extend(await create(queue, 50))
            made += 50
            while len(live) > 200:  # closed sessions stay listed for their retention
                close = proto.CloseSessionRequest(session_id=live.pop(0))
                await queue.CloseSession(close, metadata=MD)
            worker = ManualWorker(channel, MD, labels={"n": str(made)})
            await worker.register()
            workers.append(worker)
            if len(workers) > 5:
                await workers.pop(0).stop()
    finally:
        for worker in workers:
            await worker.stop()
    return made


async def test_scrapes_never_fail_while_sessions_and_workers_come_and_go():
    """Every scrape answers 200 with the figures while another task creates and closes
    sessions and registers workers: the figures are taken on the event loop."""
    async with queue_manager() as (qm, channel):
        await create(proto.QueueStub(channel), 2000)  # so that a scrape takes a while
        stop = asyncio.Event()
        worker = asyncio.create_task(churn(channel, stop, most=6000))
        codes: list[int] = []
        try:
            for _ in range(120):
                code, text = await asyncio.to_thread(scrape, qm.metrics_port)
                codes.append(code)
                if code == 200:
                    assert "alpcrun_sessions{" in text
        finally:
            stop.set()
            made = await worker
        assert [c for c in codes if c != 200] == []
        assert made >= 100  # the core really changed meanwhile
        code, text = await asyncio.to_thread(scrape, qm.metrics_port)
        assert code == 200
        assert 'alpcrun_sessions{state="closed"}' in text


async def test_idle_and_half_sent_connections_are_bounded_and_timed_out():
    """Hundreds of idle and half-sent connections hold no thread and no more than
    metrics_max_connections slots; scrapes still answer; all are closed after
    metrics_timeout."""
    async with queue_manager(metrics_timeout=1.0, metrics_max_connections=64) as (qm, _):
        port = qm.metrics_port
        assert port is not None
        assert (await asyncio.to_thread(scrape, port))[0] == 200  # the rendering thread starts
        threads = threading.active_count()
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(reader.read(), 15) == b""
            except ConnectionError:
                return True

        try:
            for _ in range(500):
                conns.append(await asyncio.open_connection("127.0.0.1", port))
            for _, w in conns[250:]:
                w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            for _ in range(5):
                code, text = await asyncio.to_thread(scrape, port)
                assert code == 200
                assert "alpcrun_queue_depth" in text
            assert threading.active_count() <= threads + 5  # not one per connection
            assert all(await asyncio.gather(*(closed(r) for r, _ in conns)))
        finally:
            for _, w in conns:
                w.close()
        code, _text = await asyncio.to_thread(scrape, port)
        assert code == 200


async def test_bad_requests_get_http_errors_and_the_endpoint_serves_on():
    """Not HTTP, a method other than GET, an unknown path or an over-long head are refused
    with the HTTP status for each; scrapes go on."""
    async with queue_manager() as (qm, _):
        port = qm.metrics_port

        async def exchange(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            try:
                return await asyncio.wait_for(reader.read(), 15)
            finally:
                writer.close()

        assert (await exchange(b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await exchange(b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        assert (await exchange(b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        long_head = b"GET /metrics HTTP/1.1\r\nX: " + b"x" * 20_000 + b"\r\n\r\n"
        assert (await exchange(long_head)).startswith(b"HTTP/1.1 431 ")
        code, text = await asyncio.to_thread(scrape, port, "/metrics?name=x")
        assert code == 200
        assert "alpcrun_queue_depth" in text


async def test_at_the_limit_a_new_connection_closes_the_oldest_waiting_one():
    """With metrics_max_connections open and waiting, a scrape still gets through: the
    connection that has waited longest is closed for it."""
    async with queue_manager(metrics_timeout=60, metrics_max_connections=8) as (qm, _):
        port = qm.metrics_port
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        try:
            code, _text = await asyncio.to_thread(scrape, port)
            assert code == 200
            assert await asyncio.wait_for(conns[0][0].read(), 15) == b""  # the oldest
        finally:
            for _, w in conns:
                w.close()


async def test_cache_servers_metrics_are_bounded_too():
    """The central cache and the node agent serve /metrics with the same bounds."""
    async with (
        running_central_cache(metrics_port=0, metrics_timeout=1.0) as cc,
        running_node_agent(cc.address, metrics_port=0, metrics_timeout=1.0) as na,
    ):
        for server, name in ((cc, "alpcrun_cache_entries"), (na, "alpcrun_node_cache_entries")):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
            try:
                assert await asyncio.wait_for(reader.read(), 15) == b""  # timed out
            finally:
                writer.close()
            code, text = await asyncio.to_thread(scrape, server.metrics_port)
            assert code == 200
            assert name in text

        async def read_path_metrics() -> None:
            _code, text = await asyncio.to_thread(scrape, na.metrics_port)
            assert "alpcrun_node_cache_read_path_closed_idle_total 0.0" in text

        await eventually(read_path_metrics)
