"""Auto-batching, the in-flight window and throughput against the fake Queue server."""

from __future__ import annotations

import asyncio
import time

import pytest

from alpcrun.errors import SessionClosed

pytestmark = pytest.mark.integration


async def test_map_packs_full_batches(client, fake):
    """A 2,500-task map with max_batch_tasks=1000 goes out as 3 batches."""
    async with client.session(app_id="demo") as session:
        results = [r async for r in session.map([b"x"] * 2500)]
    assert len(results) == 2500
    assert [n for _, _, n, _ in fake.batches] == [1000, 1000, 500]
    assert len({batch_id for _, batch_id, _, _ in fake.batches}) == 3


async def test_lone_submit_is_sent_at_once(client, fake):
    """With linger 0 a single submit is sent on the next loop turn, alone in its batch."""
    async with client.session(app_id="demo") as session:
        await (await session.submit(b"warm-up"))
        start = time.monotonic()
        handle = await session.submit(b"one")
        assert await handle == b"eno"
        elapsed = time.monotonic() - start
    assert [n for _, _, n, _ in fake.batches] == [1, 1]
    assert fake.batches[-1][0] - start < 0.05
    assert elapsed < 0.5


async def test_submits_in_one_turn_share_a_batch(client, fake):
    """Tasks submitted in the same loop turn are packed into one batch."""
    async with client.session(app_id="demo") as session:
        handles = [await session.submit(str(i).encode()) for i in range(10)]
        assert [await h for h in handles] == [str(i).encode()[::-1] for i in range(10)]
    assert [n for _, _, n, _ in fake.batches] == [10]


async def test_priorities_go_in_separate_batches(client, fake):
    """Tasks of different priorities are sent in separate batches carrying the priority."""
    async with client.session(app_id="demo") as session:
        low = await session.submit(b"low", priority=1)
        high = await session.submit(b"high", priority=9)
        await asyncio.gather(low, high)
    assert sorted((p, n) for _, _, n, p in fake.batches) == [(1, 1), (9, 1)]


async def test_linger_delays_a_partial_batch(make_client, fake):
    """With linger > 0 a partly filled batch waits up to linger before it is sent."""
    client = make_client(linger=0.2)
    async with client.session(app_id="demo") as session:
        start = time.monotonic()
        handles = [await session.submit(b"a")]
        await asyncio.sleep(0.05)
        handles.append(await session.submit(b"b"))
        await asyncio.gather(*handles)
    assert [n for _, _, n, _ in fake.batches] == [2]
    assert fake.batches[0][0] - start >= 0.15


async def test_window_bounds_tasks_in_flight(make_client, fake):
    """A server that withholds results sees at most the window (16 batches) of tasks."""
    client = make_client(max_batch_tasks=10)  # window = 160 tasks
    fake.withhold = True
    session = await client.create_session(app_id="demo")
    results = []

    async def consume():
        async for result in session.map(b"x" for _ in range(10_000)):
            results.append(result)

    consumer = asyncio.create_task(consume())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if fake.received >= 160:
            break
    await asyncio.sleep(0.1)
    assert fake.received == 160
    assert session.statistics().pending == 160
    # submit() waits too while the window is full.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await session.submit(b"one more")
    await session.close()
    with pytest.raises(SessionClosed):
        await consumer
    assert results == []


async def test_slow_consumer_holds_back_the_input(make_client, fake):
    """A map whose consumer stops reading stops pulling input after about one window."""
    client = make_client(max_batch_tasks=10)  # window = 160 tasks
    pulled = 0

    def payloads():
        nonlocal pulled
        for _ in range(10_000):
            pulled += 1
            yield b"x"

    async with client.session(app_id="demo") as session:
        results = session.map(payloads())
        first = await anext(results)
        await asyncio.sleep(0.2)
        assert first.ok
        assert pulled <= 160 + 10 + 1
        await results.aclose()


async def test_map_throughput(make_client, fake, capsys):
    """A 100,000-task map at batch 1000 completes (and reports its rate)."""
    client = make_client(max_batch_tasks=1000)
    n = 100_000
    payloads = [b"0123456789abcdef"] * n
    async with client.session(app_id="bench") as session:
        await (await session.submit(b"warm-up"))
        start = time.perf_counter()
        count = 0
        async for result in session.map(payloads):
            count += result.ok
        elapsed = time.perf_counter() - start
    assert count == n
    with capsys.disabled():
        print(f"\nfake-server map: {n} tasks in {elapsed:.2f}s = {n / elapsed:,.0f} tasks/s")
