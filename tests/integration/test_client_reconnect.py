"""The client SDK across dropped connections and queue-manager restarts.

A real queue manager on port 0 and real in-process workers (``WorkerRunner``, connected
directly); the client dials through :class:`TcpProxy`, which cuts its connections, refuses
new ones or holds back its acknowledgements on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from alpcrun.client import AsyncClient, Client, TaskResult
from alpcrun.config import ClientSettings, WorkerSettings
from alpcrun.errors import ReconnectFailed, SessionLost
from alpcrun.queue_manager import QueueManager
from alpcrun.testing import running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerRunner

from .proxy import TcpProxy
from .sim import until

pytestmark = pytest.mark.integration
KEY = "reconnect-key"


class Echo(Worker):
    """Answers ``b"done:" + payload``."""

    async def handle(self, task: TaskContext) -> bytes:
        return b"done:" + task.payload


@contextlib.asynccontextmanager
async def grid() -> AsyncIterator[tuple[QueueManager, TcpProxy]]:
    """A queue manager and a proxy in front of it."""
    async with running_queue_manager(api_key=KEY) as qm, TcpProxy(qm.address) as proxy:
        yield qm, proxy


@contextlib.asynccontextmanager
async def workers(address: str, n: int = 2) -> AsyncIterator[list[WorkerRunner]]:
    """``n`` Echo workers connected straight to the queue manager (not through the proxy)."""
    runners = [
        WorkerRunner(
            Echo(),
            WorkerSettings(
                queue_manager=address,
                api_key=KEY,
                concurrency=4,
                reconnect_delay=0.05,
                drain_timeout=2.0,
                node="node",
                pod=f"pod-{i}",
            ),
        )
        for i in range(n)
    ]
    tasks = [asyncio.create_task(runner.run()) for runner in runners]
    try:
        yield runners
    finally:
        for runner in runners:
            runner.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)


def settings(proxy: TcpProxy, **values) -> ClientSettings:
    return ClientSettings(queue_manager=proxy.address, api_key=KEY, **values)


async def reopen_after(proxy: TcpProxy, delay: float) -> None:
    await asyncio.sleep(delay)
    await proxy.start()


def elapsed_since(start: float) -> float:
    return asyncio.get_running_loop().time() - start


async def paced(n: int, *, every: int = 25, pause: float = 0.01) -> AsyncIterator[bytes]:
    """Payloads b"0", b"1", ... with a short pause after every ``every`` (the run lasts a while)."""
    for i in range(n):
        yield b"%d" % i
        if i % every == every - 1:
            await asyncio.sleep(pause)


def check_exactly_once(results: list[TaskResult], n: int) -> None:
    """Every index 0..n-1 came back once, with the right output."""
    counts = Counter(r.index for r in results)
    assert len(results) == n, f"{len(results)} results for {n} tasks"
    assert set(counts) == set(range(n))
    assert max(counts.values()) == 1
    for r in results:
        assert r.value() == b"done:%d" % r.index


async def disrupt(
    proxy: TcpProxy,
    times: int,
    *,
    progress: Callable[[], int],
    reconnects: Callable[[], int],
    n: int,
    done: Callable[[], bool],
) -> int:
    """Cut the client's connection ``times`` times mid-run (the fourth time: refuse for a while).

    Disruption k waits until k/(times+2) of the ``n`` results arrived and the client has
    re-attached after the previous one. Returns how many disruptions happened.
    """
    for step in range(times):
        threshold = (step + 1) * n // (times + 2)

        def ready(threshold: int = threshold, step: int = step) -> bool:
            return progress() >= threshold and reconnects() >= step and proxy.live > 0

        await until(lambda: done() or ready(), within=30, state=progress)
        if done():
            return step
        if step == 3:
            await proxy.refuse_for(0.3)
        else:
            proxy.cut()
    return times


async def test_cut_connections_lose_and_duplicate_nothing():
    """3,000 tasks with the connection cut five times and refused once: each result once."""
    n = 3000
    async with grid() as (qm, proxy), workers(qm.address):
        client = AsyncClient(settings=settings(proxy, max_batch_tasks=25, reconnect_timeout=30))
        async with client, client.session(app_id="cuts") as session:
            results: list[TaskResult] = []

            async def consume() -> None:
                async for result in session.map(paced(n)):
                    results.append(result)

            consumer = asyncio.create_task(consume())
            disruptions = await disrupt(
                proxy,
                6,
                progress=lambda: len(results),
                reconnects=lambda: session.statistics().reconnects,
                n=n,
                done=consumer.done,
            )
            await asyncio.wait_for(consumer, 60)
            stats = session.statistics()
    check_exactly_once(results, n)
    assert disruptions == 6, "the run ended before every disruption"
    assert stats.reconnects >= disruptions
    assert (stats.completed, stats.failed, stats.pending) == (n, 0, 0)


async def test_submitted_handles_survive_cuts():
    """Handles from submit() resolve once each, across a cut before and one during the run."""
    n = 600
    async with grid() as (qm, proxy):
        client = AsyncClient(settings=settings(proxy, max_batch_tasks=50))
        async with client, client.session(app_id="handles") as session:
            handles = [await session.submit(b"%d" % i) for i in range(n)]
            await session.flush()
            await until(lambda: proxy.live > 0)
            proxy.cut()  # no worker yet: every batch is unanswered and is sent again
            await until(lambda: session.statistics().reconnects == 1)
            async with workers(qm.address):
                await until(lambda: sum(h.done() for h in handles) >= 50)
                proxy.cut()
                outputs = await asyncio.wait_for(asyncio.gather(*handles), 60)
            stats = session.statistics()
            unclaimed = await session.unclaimed_results()
    assert outputs == [b"done:%d" % i for i in range(n)]
    assert stats.reconnects >= 1  # the second cut may come after the last result
    assert stats.completed == n
    assert unclaimed == []


async def test_results_written_again_after_a_lost_ack_are_dropped():
    """Results whose acks were lost come again on the next stream; they are dropped by seq."""
    n = 100
    async with grid() as (qm, proxy):
        client = AsyncClient(settings=settings(proxy, max_batch_tasks=10))
        async with client, client.session(app_id="repeats") as session:
            handles = [await session.submit(b"%d" % i) for i in range(n)]
            await session.flush()
            record = qm.core.sessions[session.id]
            await until(lambda: record.submitted == n)
            proxy.stall_upstream()  # from now on no ack reaches the queue manager
            async with workers(qm.address, 1):
                outputs = await asyncio.wait_for(asyncio.gather(*handles), 30)
                unacked = record.results.unacked
                assert unacked > 0
                proxy.cut()
                proxy.resume_upstream()
                await until(lambda: session.statistics().duplicate_messages >= unacked)
                await until(lambda: record.results.unacked == 0)  # the repeats were acked
            stats = session.statistics()
            unclaimed = await session.unclaimed_results()
    assert outputs == [b"done:%d" % i for i in range(n)]
    assert stats.reconnects == 1
    assert stats.duplicate_messages == unacked
    assert stats.duplicate_tasks == 0
    assert stats.completed == n
    assert unclaimed == []


async def test_unary_calls_ride_out_a_short_outage():
    """UpdateSession is retried and CreateSession waits for the connection, sent once."""
    async with grid() as (qm, proxy):
        client = AsyncClient(settings=settings(proxy, reconnect_timeout=10))
        async with client:
            session = await client.create_session(app_id="unary")

            await proxy.refuse()
            proxy.cut()
            start = asyncio.get_running_loop().time()
            reopen = asyncio.create_task(reopen_after(proxy, 0.4))
            await session.update(priority=7)
            assert session.attributes.priority == 7
            assert elapsed_since(start) >= 0.3
            await reopen

            await proxy.refuse()
            proxy.cut()
            # Let gRPC see the reset first: a CreateSession sent on the dying connection
            # fails with Unavailable and is (by design) not sent again.
            await asyncio.sleep(0.1)
            start = asyncio.get_running_loop().time()
            reopen = asyncio.create_task(reopen_after(proxy, 0.4))
            other = await client.create_session(app_id="unary-2")
            assert other.attributes.app_id == "unary-2"
            assert elapsed_since(start) >= 0.3
            await reopen
            assert len(qm.core.sessions) == 2  # CreateSession was sent once

            await proxy.refuse()
            proxy.cut()
            reopen = asyncio.create_task(reopen_after(proxy, 0.4))
            await session.close()
            await other.close()
            await reopen
            assert all(record.closed for record in qm.core.sessions.values())


async def test_reconnect_timeout_expiry_fails_pending_work_clearly():
    """With the queue manager unreachable past reconnect_timeout, handles, maps and unary
    calls fail with ReconnectFailed naming the address; the session works again later."""
    async with grid() as (qm, proxy):
        client = AsyncClient(settings=settings(proxy, reconnect_timeout=0.5))
        async with client:
            session = await client.create_session(app_id="gone")
            handle = await session.submit(b"early")
            mapped = session.map([b"m0", b"m1"])
            first = asyncio.create_task(anext(mapped))
            record = qm.core.sessions[session.id]
            await until(lambda: record.submitted == 3)  # no workers: all three stay queued
            await proxy.refuse()
            proxy.cut()
            start = asyncio.get_running_loop().time()
            with pytest.raises(ReconnectFailed) as caught:
                await asyncio.wait_for(handle, 10)
            assert 0.4 <= elapsed_since(start) < 5
            assert proxy.address in str(caught.value)
            assert "reconnect_timeout=0.5s" in str(caught.value)
            with pytest.raises(ReconnectFailed):
                await asyncio.wait_for(first, 5)
            await mapped.aclose()
            with pytest.raises(ReconnectFailed):
                await session.update(priority=3)
            # Reachable again: the next submit opens a new stream, and the results of the
            # tasks whose handles failed arrive as unclaimed results. (gRPC retries a failed
            # connection after its own backoff, at most 2 s plus jitter: wait that out.)
            await proxy.start()
            await asyncio.sleep(2.5)
            async with workers(qm.address, 1):
                assert await asyncio.wait_for(await session.submit(b"late"), 20) == b"done:late"
                leftovers: list[TaskResult] = []
                async with asyncio.timeout(20):
                    while len(leftovers) < 3:
                        leftovers.extend(await session.unclaimed_results(wait=1))
            await session.close()
    assert sorted(r.value() for r in leftovers) == [b"done:early", b"done:m0", b"done:m1"]


async def test_restart_without_journal_raises_session_lost_promptly():
    """A queue manager restarted without a journal forgets the session: SessionLost, no hang."""
    async with TcpProxy("127.0.0.1:1") as proxy:
        client = AsyncClient(settings=settings(proxy, reconnect_timeout=30))
        async with client:
            async with running_queue_manager(api_key=KEY) as first:
                proxy.target = first.address
                session = await client.create_session(app_id="lost")
                handle = await session.submit(b"pending")  # no workers: stays pending
                await session.flush()
            start = asyncio.get_running_loop().time()
            async with running_queue_manager(api_key=KEY) as second:
                proxy.target = second.address
                with pytest.raises(SessionLost) as caught:
                    await asyncio.wait_for(handle, 10)
                assert elapsed_since(start) < 8
                assert caught.value.session_id == session.id
                assert "journal" in str(caught.value)
                await session.close()  # nothing left to close: no error
                with pytest.raises(SessionLost):
                    await session.submit(b"more")
                with pytest.raises(SessionLost):
                    await session.update(priority=2)


async def test_sync_client_survives_cuts():
    """The blocking Client rides out cut connections: each map result once."""
    n = 2000
    async with grid() as (qm, proxy), workers(qm.address):
        shared: dict = {"done": 0, "session": None}

        def scenario() -> tuple[list[TaskResult], int]:
            with Client(settings=settings(proxy, max_batch_tasks=25)) as client:
                with client.session(app_id="sync") as session:
                    shared["session"] = session
                    results = []
                    for result in session.map(b"%d" % i for i in range(n)):
                        results.append(result)
                        shared["done"] += 1
                        if len(results) % 25 == 0:
                            time.sleep(0.01)  # a slow consumer: the run lasts a while
                    return results, session.statistics().reconnects

        running = asyncio.create_task(asyncio.to_thread(scenario))
        disruptions = await disrupt(
            proxy,
            3,
            progress=lambda: shared["done"],
            reconnects=lambda: shared["session"].statistics().reconnects,
            n=n,
            done=running.done,
        )
        results, reconnects = await asyncio.wait_for(running, 60)
    check_exactly_once(results, n)
    assert disruptions == 3
    assert reconnects >= disruptions


async def test_restart_with_journal_keeps_the_session_and_loses_nothing(tmp_path):
    """A queue manager restarted on its journal mid-run: same session, each result once."""
    journal = str(tmp_path / "queue-manager.db")
    n = 2000
    results: list[TaskResult] = []
    # Workers dial through a proxy too, so that they can follow the restarted queue manager.
    async with TcpProxy("127.0.0.1:1") as proxy, TcpProxy("127.0.0.1:1") as worker_proxy:
        client = AsyncClient(settings=settings(proxy, max_batch_tasks=25, reconnect_timeout=30))
        async with client, contextlib.AsyncExitStack() as first_run:
            first = await first_run.enter_async_context(
                running_queue_manager(api_key=KEY, journal=journal)
            )
            proxy.target = worker_proxy.target = first.address
            session = await client.create_session(app_id="journal")

            async def consume() -> None:
                async for result in session.map(paced(n)):
                    results.append(result)

            consumer = asyncio.create_task(consume())
            async with workers(worker_proxy.address):
                await until(lambda: len(results) >= n // 3, within=30, state=lambda: len(results))
                await first_run.aclose()  # the queue manager goes away mid-run
                async with running_queue_manager(api_key=KEY, journal=journal) as second:
                    proxy.target = worker_proxy.target = second.address
                    assert session.id in second.core.sessions
                    await asyncio.wait_for(consumer, 60)
                    stats = session.statistics()
                    await session.close()
    check_exactly_once(results, n)
    assert stats.reconnects >= 1
    assert (stats.completed, stats.pending) == (n, 0)
