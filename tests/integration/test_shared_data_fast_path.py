"""The node agent's one-message fast path (GetSharedDataUnary) and its fallbacks to streaming."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.node import NodeCacheService
from alpcrun.errors import ResourceExhausted, SessionNotFound
from alpcrun.proto import GetSharedDataRequest, NodeCacheStub, add_node_cache_servicer
from alpcrun.proto.channel import insecure_channel
from alpcrun.testing import running_central_cache, running_node_agent

pytestmark = pytest.mark.integration
KEY = "test-key"
MD = (("api_key", KEY),)
CHUNK = 4096


async def test_small_values_come_in_one_reply_large_ones_as_a_header():
    """A value up to chunk_bytes is the whole reply; a larger one is its header alone."""
    small, large = b"s" * CHUNK, bytes(range(256)) * (3 * CHUNK // 256 + 1)
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address, chunk_bytes=CHUNK) as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        central = SharedDataClient(cch, api_key=KEY)
        await central.set("small", small, ttl_s=30)
        await central.set("large", large, ttl_s=30)
        unary = NodeCacheStub(nch).GetSharedDataUnary
        reply = await unary(GetSharedDataRequest(session_id="small", update_level=1), metadata=MD)
        assert (reply.data, reply.header.size_bytes) == (small, CHUNK)
        assert 29_000 < reply.header.ttl_ms <= 30_000
        reply = await unary(GetSharedDataRequest(session_id="large", update_level=1), metadata=MD)
        assert (reply.data, reply.header.size_bytes) == (b"", len(large))
        reader = SharedDataClient(nch, api_key=KEY, node=True)
        assert (await reader.get("small", 1)).value == small
        assert (await reader.get("large", 1)).value == large  # streamed after the header
        assert na.cache is not None
        st = na.cache.statistics()
        assert st.central_fetches == 2
        assert st.bytes_served == 2 * len(small) + len(large)  # header-only replies send none


async def test_unary_errors_and_byte_bound_match_the_stream():
    """Unknown sessions are NOT_FOUND and the reader's max_value_bytes holds on the fast path."""
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address) as na,
        insecure_channel(cc.address) as cch,
        insecure_channel(na.address) as nch,
    ):
        with pytest.raises(SessionNotFound):
            await SharedDataClient(nch, api_key=KEY, node=True).get("ghost", 1)
        await SharedDataClient(cch, api_key=KEY).set("s", b"x" * 1024)
        bounded = SharedDataClient(nch, api_key=KEY, node=True, max_value_bytes=100)
        with pytest.raises(ResourceExhausted, match="max_value_bytes"):
            await bounded.get("s", 1)


class StreamOnlyNode(NodeCacheService):
    """A node agent from before the fast path: GetSharedDataUnary is UNIMPLEMENTED."""

    async def GetSharedDataUnary(self, request, context):  # type: ignore[override]
        self.unary_calls = getattr(self, "unary_calls", 0) + 1
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def test_reader_falls_back_to_streaming_on_an_older_node_agent():
    """UNIMPLEMENTED once switches the reader to GetSharedData for good."""
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address) as na,
        insecure_channel(cc.address) as cch,
    ):
        await SharedDataClient(cch, api_key=KEY).set("s", b"old node")
        assert na.cache is not None
        service = StreamOnlyNode(na.cache, na.clock)
        server = grpc.aio.server()
        add_node_cache_servicer(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with insecure_channel(f"127.0.0.1:{port}") as ch:
                reader = SharedDataClient(ch, node=True)
                for _ in range(3):
                    assert (await reader.get("s", 1)).value == b"old node"
        finally:
            await server.stop(0)
        assert service.unary_calls == 1
