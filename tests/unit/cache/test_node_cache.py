"""NodeCache (LRU + single-flight pull-through) against a fake central cache, fake clock."""

import asyncio

import pytest

from alpcrun.cache.lru import NodeLRU
from alpcrun.cache.node import NodeCache
from alpcrun.errors import InvalidArgument, SessionNotFound, Unavailable
from alpcrun.testing import FakeClock


class FakeCentral:
    """Answers gets from a dict after ``gate`` opens; scripted failures first."""

    def __init__(self, values, failures=()):
        self.values = values
        self.failures = list(failures)
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0

    async def get_chunks(self, session_id, level, *, deadline_s=None):
        self.calls += 1
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        value, ttl = self.values[(session_id, level)]
        return [value[:1], value[1:]], ttl


def make(central, max_bytes=1 << 20):
    clock = FakeClock()
    lru = NodeLRU(max_bytes=max_bytes, clock=clock)
    return NodeCache(lru=lru, central=central, clock=clock), clock


async def test_concurrent_misses_one_fetch_then_hits():
    central = FakeCentral({("s", 1): (b"v1", 30.0)})
    central.gate.clear()
    cache, _ = make(central)
    waiters = [asyncio.create_task(cache.get("s", 1)) for _ in range(32)]
    await asyncio.sleep(0)
    central.gate.set()
    entries = await asyncio.gather(*waiters)
    assert {e.value for e in entries} == {b"v1"}
    assert (await cache.get("s", 1)).value == b"v1"
    st = cache.statistics()
    assert (central.calls, st.central_fetches, st.singleflight_joins, st.lru.hits) == (1, 1, 31, 1)


async def test_failed_inflight_fetch_fails_every_waiter_then_retries():
    central = FakeCentral({("s", 1): (b"v1", 30.0)}, failures=[Unavailable("central down")])
    central.gate.clear()
    cache, _ = make(central)
    waiters = [asyncio.create_task(cache.get("s", 1)) for _ in range(8)]
    await asyncio.sleep(0)
    central.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert "central cache unreachable" in str(results[0])
    assert cache.lru.get(("s", 1)) is None  # nothing cached from the failure
    assert (await cache.get("s", 1)).value == b"v1"
    st = cache.statistics()
    assert (central.calls, st.central_fetch_failures) == (2, 1)


async def test_ttl_inherited_and_higher_level_goes_to_central():
    central = FakeCentral({("s", 1): (b"v1", 10.0), ("s", 2): (b"v2", 10.0)})
    cache, clock = make(central)
    await cache.get("s", 1)
    clock.advance(5)
    assert (await cache.get("s", 2)).value == b"v2"  # a level never seen: fetched
    assert (await cache.get("s", 1)).value == b"v1"  # level 1 still held
    assert central.calls == 2
    clock.advance(5)  # level 1 expires now (its central TTL), level 2 has 5 s left
    assert (await cache.get("s", 2)).value == b"v2"
    central.failures = [SessionNotFound("gone")]
    with pytest.raises(SessionNotFound):
        await cache.get("s", 1)
    with pytest.raises(InvalidArgument):
        await cache.get("s", 0)
