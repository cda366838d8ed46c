"""Single-flight: N concurrent misses, one fetch; a failed fetch fails every joiner once."""

import asyncio

import pytest

from alpcrun.cache.singleflight import SingleFlight


async def test_concurrent_calls_share_one_fetch():
    flight: SingleFlight[str, bytes] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def fetch():
        nonlocal calls
        calls += 1
        await gate.wait()
        return b"value"

    waiters = [asyncio.create_task(flight.do("k", fetch)) for _ in range(50)]
    await asyncio.sleep(0)
    assert flight.inflight() == 1
    gate.set()
    assert await asyncio.gather(*waiters) == [b"value"] * 50
    assert (calls, flight.fetches, flight.joins, flight.inflight()) == (1, 1, 49, 0)


async def test_failed_fetch_fails_every_joiner_and_the_next_call_retries():
    flight: SingleFlight[str, bytes] = SingleFlight()
    gate = asyncio.Event()
    outcomes = [RuntimeError("central down"), b"ok"]

    async def fetch():
        await gate.wait()
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    waiters = [asyncio.create_task(flight.do("k", fetch)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and str(r) == "central down" for r in results)
    assert flight.inflight() == 0
    assert await flight.do("k", fetch) == b"ok"
    assert flight.fetches == 2


async def test_a_cancelled_joiner_does_not_cancel_the_fetch_for_others():
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def fetch():
        await gate.wait()
        return 7

    first = asyncio.create_task(flight.do("k", fetch))
    second = asyncio.create_task(flight.do("k", fetch))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == 7
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_distinct_keys_fetch_separately():
    flight: SingleFlight[tuple[str, int], int] = SingleFlight()

    async def fetch_of(n):
        async def fetch():
            return n

        return fetch

    assert await flight.do(("s", 1), await fetch_of(1)) == 1
    assert await flight.do(("s", 2), await fetch_of(2)) == 2
    assert flight.fetches == 2
