"""Shared data end to end on real servers: a central cache and a node agent on port 0."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from alpcrun import proto
from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.lru import ENTRY_OVERHEAD_BYTES
from alpcrun.cache.read_client import NodeReadClient
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SessionNotFound,
    SharedDataExists,
    Unauthenticated,
    Unavailable,
)
from alpcrun.proto.channel import insecure_channel
from alpcrun.testing import FakeClock, running_central_cache, running_node_agent

from .checks import eventually

pytestmark = pytest.mark.integration
KEY = "test-key"
MIB = 1 << 20


def client(channel, *, node=False, key=KEY):
    return SharedDataClient(channel, api_key=key, node=node)


async def test_set_get_update_delete_round_trip_in_chunks():
    value = bytes(range(256)) * (5 * MIB // 256)  # 5 MiB through a 2 MiB message limit
    async with (
        running_central_cache(max_message_bytes=2 * MIB) as cc,
        insecure_channel(cc.address, 2 * MIB) as ch,
    ):
        c = client(ch)
        assert await c.set("s1", value, ttl_s=30) == 30
        got = await c.get("s1", 1)
        assert got.value == value
        assert 29 < got.ttl_s <= 30
        await c.update("s1", b"level two", level=2)
        assert (await c.get("s1", 2)).value == b"level two"
        assert (await c.get("s1", 1)).value == value  # older level still readable
        assert await c.delete("s1") == 2
        with pytest.raises(SessionNotFound):
            await c.get("s1", 2)
        assert cc.store.statistics().bytes_used == 0


async def test_every_call_needs_the_api_key():
    async with running_central_cache() as cc, insecure_channel(cc.address) as ch:
        with pytest.raises(Unauthenticated):
            await SharedDataClient(ch).get("s", 1)


async def test_bad_input_gets_documented_errors_and_stores_nothing():
    async with (
        running_central_cache(max_ttl=60, max_value_bytes=MIB, max_bytes=3 * MIB) as cc,
        insecure_channel(cc.address) as ch,
    ):
        c = client(ch)
        with pytest.raises(InvalidArgument) as exc:
            await c.set("s", b"x", level=0)
        assert exc.value.field == "header.update_level"
        with pytest.raises(InvalidArgument) as exc:
            await c.set("s", b"x", ttl_s=61)
        assert exc.value.field == "header.ttl_ms"
        with pytest.raises(InvalidArgument) as exc:
            await c.set("s", b"x" * (MIB + 1))
        assert exc.value.field == "header.size_bytes"
        with pytest.raises(SessionNotFound):
            await c.update("unknown", b"x", level=2)
        with pytest.raises(SessionNotFound):
            await c.get("unknown", 1)
        await c.set("s", b"x", level=2)
        with pytest.raises(SharedDataExists):
            await c.set("s", b"y")
        with pytest.raises(InvalidArgument) as exc:
            await c.update("s", b"y", level=1)  # going backwards
        assert exc.value.field == "header.update_level"
        with pytest.raises(NotFound):
            await c.get("s", 1)
        st = cc.store.statistics()
        assert (st.entries, st.bytes_used, st.bytes_reserved) == (1, 1 + ENTRY_OVERHEAD_BYTES, 0)


async def test_an_overlong_session_id_is_invalid_argument_everywhere(tmp_path):
    """An id longer than any the grid makes is refused by name, not echoed into the status."""
    sid = "s" * 20_000
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address, read_socket=f"{tmp_path}/r.sock") as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        central, node = client(cch), SharedDataClient(nch, api_key=KEY, node=True)
        with pytest.raises(InvalidArgument) as exc:
            await central.set(sid, b"x")
        assert exc.value.field == "header.session_id"
        assert "20000 characters long; at most 128" in str(exc.value)
        for reader in (central, node):
            with pytest.raises(InvalidArgument) as exc:
                await reader.get(sid, 1)
            assert exc.value.field == "session_id"
        fast = NodeReadClient(na.read_address, api_key=KEY)
        try:
            with pytest.raises(InvalidArgument) as exc:
                await fast.get(sid, 1)
            assert exc.value.field == "session_id"
            await central.set("s" * 128, b"ok")  # the longest id accepted
            assert (await fast.get("s" * 128, 1)).value == b"ok"
        finally:
            await fast.aclose()
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 1  # the long id never left the node


async def _chunks(*items: proto.SharedDataChunk, hang: asyncio.Event | None = None):
    for item in items:
        yield item
    if hang is not None:
        await hang.wait()


async def test_streams_cut_or_short_store_nothing_and_free_their_reservation():
    async with running_central_cache() as cc, insecure_channel(cc.address) as ch:
        stub = proto.CentralCacheStub(ch)
        md = (("api_key", KEY),)
        header = proto.SharedDataHeader(session_id="s", update_level=1, size_bytes=3 * MIB)
        first = proto.SharedDataChunk(header=header, data=b"a" * MIB)
        never = asyncio.Event()
        call = stub.SetSharedData(_chunks(first, hang=never), metadata=md)

        async def reserved() -> None:
            assert cc.store.statistics().bytes_reserved == 3 * MIB + ENTRY_OVERHEAD_BYTES

        await eventually(reserved)
        call.cancel()  # the client goes away after one of three chunks
        with pytest.raises(asyncio.CancelledError):
            await call
        with pytest.raises(grpc.RpcError) as err:  # the stream ends one chunk short
            await stub.SetSharedData(
                _chunks(first, proto.SharedDataChunk(data=b"b" * MIB)), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2097152 of 3145728" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:  # no header
            await stub.SetSharedData(_chunks(proto.SharedDataChunk(data=b"x")), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        async def clean() -> None:
            st = cc.store.statistics()
            assert (st.entries, st.bytes_used, st.bytes_reserved) == (0, 0, 0)

        await eventually(clean)
        await client(ch).set("s", b"whole")  # the key is free: nothing half-written was kept


async def test_full_cache_is_resource_exhausted():
    full = 2 * (MIB + ENTRY_OVERHEAD_BYTES)  # two 1 MiB levels, each with its overhead
    async with running_central_cache(max_bytes=full) as cc, insecure_channel(cc.address) as ch:
        c = client(ch)
        await c.set("a", b"x" * MIB)
        await c.set("b", b"x" * MIB)
        with pytest.raises(ResourceExhausted, match="central cache full"):
            await c.set("c", b"x")
        await c.delete("a")
        await c.set("c", b"x")


async def test_ttl_expiry_is_swept_and_inherited_by_the_node_cache():
    clock = FakeClock()
    async with (
        running_central_cache(clock=clock, cleanup_interval=0.01) as cc,
        running_node_agent(cc.address, clock=clock, cleanup_interval=0.01) as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        await client(cch).set("s", b"v", ttl_s=10)
        clock.advance(4)
        got = await client(nch, node=True).get("s", 1)
        assert got.ttl_s == pytest.approx(6, abs=0.01)
        clock.advance(6)

        async def swept() -> None:
            assert cc.store.statistics().expirations == 1
            assert na.cache is not None
            assert na.cache.lru.statistics().expirations == 1

        await eventually(swept)
        with pytest.raises(SessionNotFound):
            await client(nch, node=True).get("s", 1)


@pytest.mark.timeout(180)  # 4 GiB through one process's event loops: ~20 s
async def test_64_workers_one_node_one_central_fetch():
    value = hashlib.sha256(b"seed").digest() * (64 * MIB // 32)
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address, cache_size="1GB") as na,
        insecure_channel(cc.address) as cch,
    ):
        await client(cch).set("s", value)
        channels = [insecure_channel(na.address) for _ in range(8)]
        try:
            results = await asyncio.gather(
                *(client(channels[i % 8], node=True).get("s", 1) for i in range(64))
            )
        finally:
            for ch in channels:
                await ch.close(None)
        assert all(r.value == value for r in results)
        assert na.cache is not None
        st = na.cache.statistics()
        assert st.central_fetches == 1
        # Each read is a unary call (1 fetch, the others join it or hit) that answers the
        # 64 MiB value's header only, then a stream of the value (64 more hits).
        assert st.singleflight_joins + st.lru.hits == 63 + 64
        assert cc.service.bytes_sent == len(value)  # one copy crossed to the node


async def test_central_restart_hits_still_served_misses_unavailable():
    async with running_central_cache() as cc:
        address = cc.address
        async with insecure_channel(address) as cch:
            await client(cch).set("s", b"cached")
            await client(cch).update("s", b"never fetched", level=2)
        async with running_node_agent(address) as na, insecure_channel(na.address) as nch:
            node = client(nch, node=True)
            assert (await node.get("s", 1)).value == b"cached"
            await cc.stop(grace=0)
            assert (await node.get("s", 1)).value == b"cached"
            with pytest.raises(Unavailable, match="central cache unreachable"):
                await node.get("s", 2)
            assert na.cache is not None
            assert na.cache.statistics().central_fetch_failures == 1


async def test_update_while_level_one_tasks_run_serves_both_levels():
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address) as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        await client(cch).set("s", b"market v1")
        node = client(nch, node=True)
        assert (await node.get("s", 1)).value == b"market v1"
        await client(cch).update("s", b"market v2", level=2)
        level1, level2 = await asyncio.gather(
            *(node.get("s", lvl) for lvl in (1, 2)),
        )
        assert (level1.value, level2.value) == (b"market v1", b"market v2")
        many = await asyncio.gather(*(node.get("s", 1 + i % 2) for i in range(20)))
        assert [g.value for g in many] == [b"market v1", b"market v2"] * 10
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 2


async def test_closed_sessions_shared_data_is_deleted():
    from alpcrun.client import AsyncClient
    from alpcrun.testing import running_queue_manager

    async with running_queue_manager(api_key=KEY) as qm:
        async with running_central_cache(queue_manager=qm.address) as cc:
            async with (
                AsyncClient(qm.address, api_key=KEY) as ac,
                insecure_channel(cc.address) as cch,
            ):
                session = await ac.create_session(app_id="shared")
                other = await ac.create_session(app_id="shared")
                await client(cch).set(session.id, b"data")
                await client(cch).set(other.id, b"kept")
                assert await cc.drop_closed_sessions() == 0
                await session.close()
                assert await cc.drop_closed_sessions() == 1
                assert cc.store.sessions() == [other.id]


async def test_metrics_endpoints_expose_the_cache_counters():
    import urllib.request

    async with (
        running_central_cache(metrics_port=0) as cc,
        running_node_agent(cc.address, metrics_port=0) as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        await client(cch).set("s", b"abc")
        await asyncio.gather(*(client(nch, node=True).get("s", 1) for _ in range(3)))

        def scrape(port):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        central = await asyncio.to_thread(scrape, cc.metrics_port)
        node = await asyncio.to_thread(scrape, na.metrics_port)
    assert f"alpcrun_cache_bytes {3 + ENTRY_OVERHEAD_BYTES}.0" in central
    assert "alpcrun_cache_stores_total 1.0" in central
    assert "alpcrun_node_cache_central_fetches_total 1.0" in node
    assert f"alpcrun_node_cache_bytes {3 + ENTRY_OVERHEAD_BYTES}.0" in node


async def test_concurrent_sets_one_wins_and_nothing_stays_reserved():
    async with running_central_cache() as cc, insecure_channel(cc.address) as ch:
        c = client(ch)
        outcomes = await asyncio.gather(
            *(c.set("s", bytes([i]) * (2 * MIB)) for i in range(4)), return_exceptions=True
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, SharedDataExists)]
        assert (len(won), len(lost)) == (1, 3)
        st = cc.store.statistics()
        assert (st.entries, st.bytes_used, st.bytes_reserved) == (
            1,
            2 * MIB + ENTRY_OVERHEAD_BYTES,
            0,
        )
        value = (await c.get("s", 1)).value
        assert value == value[:1] * (2 * MIB)


async def test_node_agent_also_serves_on_a_unix_socket(tmp_path):
    sock = tmp_path / "node.sock"
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address, unix_socket=str(sock)),
        insecure_channel(cc.address) as cch,
        insecure_channel(f"unix:{sock}") as nch,
    ):
        await client(cch).set("s", b"local")
        assert (await client(nch, node=True).get("s", 1)).value == b"local"
