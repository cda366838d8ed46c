"""The node agent's read path (plain frames, no gRPC) on real servers: client and raw wire."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import socket
import struct
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from alpcrun.cache.app import CentralCacheServer, NodeAgent
from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.read_client import NodeReadClient, parse_address
from alpcrun.cache.read_server import MAX_PENDING, MAX_REQUEST_FRAME
from alpcrun.errors import (
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SessionNotFound,
    Unauthenticated,
    Unavailable,
)
from alpcrun.proto import GetSharedDataRequest, NodeReadReply, NodeReadRequest
from alpcrun.proto.channel import insecure_channel, open_channel
from alpcrun.proto.frames import frame
from alpcrun.testing import running_central_cache, running_node_agent
from tests.pki import Pki, make_pki

from .checks import eventually

pytestmark = pytest.mark.integration
KEY = "test-key"
KIB, MIB = 1 << 10, 1 << 20


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="rp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@asynccontextmanager
async def agent(
    sock: Path | None = None, *, central: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[tuple[CentralCacheServer, NodeAgent, SharedDataClient]]:
    """A central cache, a node agent in front of it (read port 0, optional read socket) and a
    writer on the central cache."""
    if sock is not None:
        overrides["read_socket"] = str(sock)
    async with (
        running_central_cache(**(central or {})) as cc,
        running_node_agent(cc.address, **overrides) as na,
        insecure_channel(cc.address) as cch,
    ):
        yield cc, na, SharedDataClient(cch, api_key=KEY)


def reader(na: NodeAgent, **kwargs: Any) -> NodeReadClient:
    assert na.read_address is not None
    return NodeReadClient(na.read_address, api_key=kwargs.pop("api_key", KEY), **kwargs)


def fetches(na: NodeAgent) -> int:
    assert na.cache is not None
    return na.cache.statistics().central_fetches


def request(rid: int, session: str = "s", level: int = 1, key: str = KEY) -> NodeReadRequest:
    get = GetSharedDataRequest(session_id=session, update_level=level)
    return NodeReadRequest(id=rid, api_key=key, get=get)


def wire(*requests: NodeReadRequest) -> bytes:
    return b"".join(frame(r.SerializeToString()) for r in requests)


async def read_reply(stream: asyncio.StreamReader) -> tuple[NodeReadReply, bytes]:
    """One reply frame and, for code 0, the value bytes after it."""
    (size,) = struct.unpack(">I", await stream.readexactly(4))
    reply = NodeReadReply.FromString(await stream.readexactly(size))
    value = await stream.readexactly(reply.header.size_bytes) if reply.code == 0 else b""
    return reply, value


@asynccontextmanager
async def raw(na: NodeAgent) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = parse_address(na.read_address or "")
    r, w = await asyncio.open_connection(host, port)
    try:
        yield r, w
    finally:
        w.close()
        with suppress(OSError, TimeoutError):
            await asyncio.wait_for(w.wait_closed(), 2)


# --- reads through the client ---------------------------------------------------------------


async def test_miss_then_hits_over_tcp_and_unix_socket(sock_dir: Path):
    value = os.urandom(KIB)
    sock = sock_dir / "r.sock"
    async with agent(sock) as (_, na, central):
        assert await central.set("s", value, ttl_s=30) == 30
        tcp, unix = reader(na), NodeReadClient(f"unix:{sock}", api_key=KEY)
        try:
            first = await tcp.get("s", 1)  # a miss: fetched from the central cache
            assert (first.session_id, first.level, first.value) == ("s", 1, value)
            assert 29 < first.ttl_s <= 30
            assert tcp.connected
            got = await unix.get("s", 1)  # a hit, over the Unix socket
            assert got.value == value
            assert 29 < got.ttl_s <= 30
            assert (await tcp.get("s", 1)).value == value
        finally:
            await tcp.aclose()
            await unix.aclose()
        assert na.cache is not None
        st = na.cache.statistics()
        assert st.central_fetches == 1
        assert st.lru.hits == 2
        assert st.bytes_served == 3 * len(value)


async def test_a_multi_mib_value_of_many_chunks_arrives_whole(sock_dir: Path):
    value = hashlib.sha256(b"seed").digest() * (3 * MIB // 32 + 7)  # not a chunk multiple
    sock = sock_dir / "r.sock"
    async with agent(sock, central={"chunk_bytes": 64 * KIB}, chunk_bytes=64 * KIB) as (
        _,
        na,
        central,
    ):
        await central.set("big", value, ttl_s=60)
        tcp, unix = reader(na), NodeReadClient(f"unix:{sock}", api_key=KEY)
        try:
            a, b = await asyncio.gather(tcp.get("big", 1), unix.get("big", 1))
            assert a.value == value
            assert b.value == value
            assert (await tcp.get("big", 1)).value == value  # a hit sends the chunks again
        finally:
            await tcp.aclose()
            await unix.aclose()
        assert na.cache is not None
        entry = na.cache.lru.get(("big", 1))
        assert entry is not None
        assert len(entry.chunks) > 1  # really served as several chunks
        assert na.cache.statistics().central_fetches == 1


async def test_levels_coexist_after_an_update():
    async with agent() as (_, na, central):
        await central.set("s", b"market v1")
        client = reader(na)
        try:
            assert (await client.get("s", 1)).value == b"market v1"
            await central.update("s", b"market v2", level=2)
            many = await asyncio.gather(*(client.get("s", 1 + i % 2) for i in range(20)))
            assert [g.value for g in many] == [b"market v1", b"market v2"] * 10
            assert [g.level for g in many] == [1, 2] * 10
        finally:
            await client.aclose()
        assert fetches(na) == 2


async def test_32_concurrent_first_reads_on_one_connection_fetch_once():
    value = os.urandom(64 * KIB)
    async with agent() as (_, na, central):
        await central.set("s", value)
        client = reader(na)
        try:
            got = await asyncio.gather(*(client.get("s", 1) for _ in range(32)))
        finally:
            await client.aclose()
        assert all(g.value == value for g in got)
        assert na.cache is not None
        st = na.cache.statistics()
        assert st.central_fetches == 1
        assert st.singleflight_joins + st.lru.hits == 31
        assert na.read_server is not None
        assert na.read_server.service.requests == 32


async def test_32_concurrent_first_reads_over_many_clients_fetch_once(sock_dir: Path):
    value = os.urandom(64 * KIB)
    sock = sock_dir / "r.sock"
    async with agent(sock) as (_, na, central):
        await central.set("s", value)
        clients = [
            reader(na) if i % 2 else NodeReadClient(f"unix:{sock}", api_key=KEY) for i in range(8)
        ]
        try:
            got = await asyncio.gather(*(clients[i % 8].get("s", 1) for i in range(32)))
            assert na.read_server is not None
            assert na.read_server.service.connections == 8
        finally:
            for c in clients:
                await c.aclose()
        assert all(g.value == value for g in got)
        assert fetches(na) == 1


async def test_more_misses_than_max_pending_on_one_connection_are_all_answered():
    """Reading pauses at MAX_PENDING waiting misses and resumes: nothing is lost or stuck."""
    async with agent() as (_, na, central):
        for i in range(3):
            await central.set(f"s{i}", b"v%d" % i)
        client = reader(na)
        n = 3 * MAX_PENDING
        try:
            got = await asyncio.wait_for(
                asyncio.gather(*(client.get(f"s{i % 3}", 1) for i in range(n))), 5
            )
        finally:
            await client.aclose()
        assert [g.value for g in got] == [b"v%d" % (i % 3) for i in range(n)]
        assert fetches(na) == 3


# --- errors through the client --------------------------------------------------------------


async def test_errors_are_the_grpc_clients_errors_and_keep_the_connection():
    async with agent() as (_, na, central):
        await central.set("s", b"one level")
        client = reader(na)
        try:
            with pytest.raises(SessionNotFound):
                await client.get("ghost", 1)
            with pytest.raises(NotFound) as exc:
                await client.get("s", 2)
            assert not isinstance(exc.value, SessionNotFound)
            assert exc.value.field == "update_level"
            assert client.connected  # error replies do not cost the connection
            assert (await client.get("s", 1)).value == b"one level"
        finally:
            await client.aclose()


async def test_wrong_or_missing_api_key_is_refused():
    async with agent() as (_, na, central):
        await central.set("s", b"secret")
        wrong, none = reader(na, api_key="nope"), reader(na, api_key=None)
        try:
            for _ in range(2):  # also on the same connection again
                with pytest.raises(PermissionDenied):
                    await wrong.get("s", 1)
                with pytest.raises(Unauthenticated):
                    await none.get("s", 1)
            assert wrong.connected
            assert none.connected
        finally:
            await wrong.aclose()
            await none.aclose()
        assert fetches(na) == 0  # refused before any fetch


async def test_auth_disabled_agent_accepts_reads_without_a_key():
    async with agent(auth_disabled=True) as (_, na, central):
        await central.set("s", b"open")
        client = reader(na, api_key=None)
        try:
            assert (await client.get("s", 1)).value == b"open"
        finally:
            await client.aclose()


async def test_a_value_over_the_clients_max_value_bytes_is_resource_exhausted():
    async with agent() as (_, na, central):
        await central.set("big", b"x" * KIB)
        await central.set("tiny", b"t")
        bounded = reader(na, max_value_bytes=100)
        try:
            with pytest.raises(ResourceExhausted, match="max_value_bytes"):
                await bounded.get("big", 1)
            assert (await bounded.get("tiny", 1)).value == b"t"  # the same client reads on
        finally:
            await bounded.aclose()
        fresh = reader(na)
        try:
            assert (await fresh.get("big", 1)).value == b"x" * KIB
        finally:
            await fresh.aclose()


async def test_a_refused_value_of_many_reads_is_dropped_and_the_connection_reads_on():
    """A 3 MiB value over the client's bound arrives in many pieces; all of them are dropped."""
    async with agent() as (_, na, central):
        await central.set("big", b"x" * (3 << 20))
        await central.set("tiny", b"t")
        bounded = reader(na, max_value_bytes=1 << 20)
        try:
            for _ in range(2):
                with pytest.raises(ResourceExhausted, match="max_value_bytes"):
                    await bounded.get("big", 1)
                assert (await bounded.get("tiny", 1)).value == b"t"
            assert na.read_server is not None
            assert na.read_server.service.connections == 1  # one connection all along
        finally:
            await bounded.aclose()


async def test_client_rejects_bad_levels_and_addresses_locally():
    with pytest.raises(ValueError, match="host:port"):
        NodeReadClient("no-port")
    with pytest.raises(ValueError, match="no path"):
        parse_address("unix:")
    assert parse_address("[::1]:3338") == ("::1", 3338)
    assert parse_address("unix:/run/x.sock") == "/run/x.sock"
    client = NodeReadClient("127.0.0.1:1")
    with pytest.raises(InvalidArgument) as exc:
        await client.get("s", 0)
    assert exc.value.field == "update_level"
    assert not client.connected  # checked before connecting


# --- the raw wire ---------------------------------------------------------------------------


async def test_level_0_is_invalid_argument_naming_update_level():
    async with agent() as (_, na, central):
        await central.set("s", b"v")
        async with raw(na) as (r, w):
            w.write(wire(request(7, level=0)))
            reply, _ = await read_reply(r)
            assert (reply.id, reply.code, reply.field) == (7, 3, "update_level")
            w.write(wire(request(8)))  # the connection is still good
            reply, value = await read_reply(r)
            assert (reply.id, reply.code, value) == (8, 0, b"v")
            assert reply.header.size_bytes == 1
            assert (reply.header.session_id, reply.header.update_level) == ("s", 1)
            assert 0 < reply.header.ttl_ms <= 600_000


async def test_a_frame_that_is_not_a_request_gets_id_0_invalid_argument_then_eof():
    async with agent() as (_, na, central):
        await central.set("s", b"v")
        async with raw(na) as (r, w):
            w.write(frame(b"\xff" * 12))
            reply, _ = await read_reply(r)
            assert (reply.id, reply.code) == (0, 3)
            assert await asyncio.wait_for(r.read(), 2) == b""
        async with raw(na) as (r, w):  # the server is unaffected
            w.write(wire(request(1)))
            reply, value = await read_reply(r)
            assert (reply.id, reply.code, value) == (1, 0, b"v")


async def test_an_over_long_prefix_gets_id_0_resource_exhausted_then_eof():
    async with agent() as (_, na, central):
        await central.set("s", b"v")
        async with raw(na) as (r, w):
            w.write(struct.pack(">I", MAX_REQUEST_FRAME + 1))  # no body needed to refuse it
            reply, _ = await read_reply(r)
            assert (reply.id, reply.code) == (0, 8)
            assert str(MAX_REQUEST_FRAME) in reply.message
            assert await asyncio.wait_for(r.read(), 2) == b""
        async with raw(na) as (r, w):
            w.write(wire(request(1)))
            assert (await read_reply(r))[1] == b"v"


async def test_a_request_of_exactly_max_request_frame_bytes_is_answered():
    big = next(  # pad the api key until the request is exactly the limit
        r
        for pad in range(MAX_REQUEST_FRAME - 40, MAX_REQUEST_FRAME)
        if len((r := request(5, key="k" * pad)).SerializeToString()) == MAX_REQUEST_FRAME
    )
    async with agent() as (_, na, _central):
        async with raw(na) as (r, w):
            w.write(wire(big))
            reply, _ = await read_reply(r)
            assert (reply.id, reply.code) == (5, 7)  # decoded and answered: a wrong key
            w.write(wire(request(6)))  # and the connection stays open
            assert (await read_reply(r))[0].id == 6


async def test_a_connection_cut_mid_frame_does_not_disturb_the_server():
    async with agent() as (_, na, central):
        await central.set("s", b"v")
        assert na.read_server is not None
        service = na.read_server.service
        data = wire(request(1))
        async with raw(na) as (_r, w):
            w.write(data[: len(data) // 2])
            await w.drain()

            async def connected() -> None:
                assert service.connections == 1

            await eventually(connected, within=3)

        async def gone() -> None:
            assert service.connections == 0

        await eventually(gone, within=3)
        assert service.requests == 0
        async with raw(na) as (r, w):
            w.write(data)
            reply, value = await read_reply(r)
            assert (reply.id, reply.code, value) == (1, 0, b"v")


async def test_pipelined_miss_and_hit_the_hit_does_not_wait_for_the_miss():
    async with agent() as (_, na, central):
        await central.set("warm", b"hot value")
        await central.set("cold", b"cold value")
        async with raw(na) as (r, w):
            w.write(wire(request(1, "warm")))
            assert (await read_reply(r))[1] == b"hot value"  # now cached
            w.write(wire(request(2, "cold"), request(3, "warm"), request(4, "ghost")))
            replies = [await read_reply(r) for _ in range(3)]
        by_id = {reply.id: (reply.code, value) for reply, value in replies}
        assert by_id == {2: (0, b"cold value"), 3: (0, b"hot value"), 4: (5, b"")}
        assert replies[0][0].id == 3  # the hit was answered while the miss was fetched


async def test_a_client_that_does_not_read_pauses_the_server():
    """Flow control: with its replies unread, the server stops taking requests, and resumes."""
    value = os.urandom(256 * KIB)
    n = 200  # 50 MiB of replies: far beyond the socket buffers
    async with agent() as (_, na, central):
        await central.set("s", value)
        assert na.read_server is not None
        service = na.read_server.service
        async with raw(na) as (r, w):
            w.write(wire(request(1)))
            assert (await read_reply(r))[1] == value
            w.write(wire(*(request(i + 2) for i in range(n))))
            await w.drain()
            await asyncio.sleep(0.3)
            assert service.requests < n // 2  # stopped answering while nothing was read
            ids = []
            for _ in range(n):
                reply, got = await asyncio.wait_for(read_reply(r), 5)
                assert got == value
                ids.append(reply.id)
        assert sorted(ids) == list(range(2, n + 2))
        assert service.requests == n + 1


async def test_misses_answered_together_wait_for_an_unread_client_one_value_at_a_time():
    """64 misses of one 1 MiB value complete at once; with the client not reading, the
    server's write buffer holds about one value, not 64 (the kernel's buffers take a few)."""
    value = os.urandom(MIB)
    n = 64
    async with agent() as (_, na, central):
        await central.set("s", value)
        assert na.read_server is not None
        async with raw(na) as (r, w):
            w.write(wire(*(request(i + 1) for i in range(n))))  # all misses: one fetch
            await w.drain()
            await asyncio.sleep(0.5)
            [conn] = na.read_server._connections.open
            assert conn._transport is not None
            assert conn._transport.get_write_buffer_size() <= 2 * MIB
            ids = []
            for _ in range(n):
                reply, got = await asyncio.wait_for(read_reply(r), 5)
                assert got == value
                ids.append(reply.id)
        assert sorted(ids) == list(range(1, n + 1))
        assert fetches(na) == 1


# --- idle connections and the connection limit --------------------------------------------


async def closed_by_server(r: asyncio.StreamReader, within: float = 15) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        while await asyncio.wait_for(r.read(1 << 16), within):
            pass
    except ConnectionError:
        pass
    except TimeoutError:
        return False
    return True


async def test_idle_and_half_sent_connections_are_closed_after_the_idle_timeout():
    """Connections that send nothing, or half a request, are closed after read_idle_timeout;
    one that keeps asking stays open, and a client whose connection was closed reconnects."""
    n = 100
    async with agent(read_idle_timeout=1.0) as (_, na, central):
        await central.set("s", b"v")
        assert na.read_server is not None
        service = na.read_server.service
        host, port = parse_address(na.read_address or "")
        conns = [await asyncio.open_connection(host, port) for _ in range(2 * n)]
        half = wire(request(1))[:7]  # the length prefix and 3 bytes of the request
        for _, w in conns[n:]:
            w.write(half)
        client = reader(na)
        try:
            assert (await client.get("s", 1)).value == b"v"
            async with raw(na) as (busy_r, busy_w):
                loop = asyncio.get_running_loop()
                start = loop.time()
                asked = 0
                while loop.time() - start < 2.5:  # past the timeout, a request every 0.2 s
                    asked += 1
                    busy_w.write(wire(request(asked)))
                    assert (await asyncio.wait_for(read_reply(busy_r), 5))[1] == b"v"
                    await asyncio.sleep(0.2)
                closed = await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
                assert all(closed)
                assert service.connections == 1  # only the busy one is left
                assert service.closed_idle >= 2 * n + 1  # the client's connection too
                assert not client.connected
                assert (await client.get("s", 1)).value == b"v"  # reconnects by itself
        finally:
            await client.aclose()
            for _, w in conns:
                w.close()


async def test_a_client_that_reads_nothing_is_closed_after_the_idle_timeout():
    """Requests sent, answers never read: once nothing moves for the timeout, the connection
    is aborted and its buffered answers dropped."""
    value = os.urandom(256 * KIB)
    async with agent(read_idle_timeout=1.0) as (_, na, central):
        await central.set("s", value)
        assert na.read_server is not None
        service = na.read_server.service
        async with raw(na) as (_r, w):
            w.write(wire(*(request(i + 1) for i in range(200))))  # 50 MiB of answers

            async def stuck() -> None:
                assert service.requests > 0
                [conn] = na.read_server._connections.open  # type: ignore[union-attr]
                assert not conn.idle  # its answers wait in the write buffer

            await eventually(stuck, within=10)

            async def aborted() -> None:
                assert service.connections == 0

            await eventually(aborted, within=15)
            assert service.closed_idle == 1
            assert service.requests < 200


async def test_at_the_connection_limit_a_new_connection_closes_the_one_idle_longest():
    """read_max_connections: the oldest idle connection makes room; with none idle the new
    connection is refused; the count never passes the limit."""
    value = os.urandom(256 * KIB)
    limit = 4
    async with agent(read_max_connections=limit, read_idle_timeout=120) as (_, na, central):
        await central.set("s", value)
        assert na.read_server is not None
        service = na.read_server.service
        host, port = parse_address(na.read_address or "")
        old = [await asyncio.open_connection(host, port) for _ in range(limit)]

        async def full() -> None:
            assert service.connections == limit

        await eventually(full)
        async with raw(na) as (r, w):  # one more: the first connection is closed for it
            w.write(wire(request(1)))
            assert (await read_reply(r))[1] == value
            assert await closed_by_server(old[0][0])
            assert service.connections == limit
            assert service.closed_idle == 1
        for _, ow in old:
            ow.close()

        async def empty() -> None:
            assert service.connections == 0

        await eventually(empty)
        busy = [await asyncio.open_connection(host, port) for _ in range(limit)]
        for _, bw in busy:  # nobody reads: every connection has answers waiting
            bw.write(wire(*(request(i + 1) for i in range(50))))

        async def all_busy() -> None:
            conns = na.read_server._connections.open  # type: ignore[union-attr]
            assert len(conns) == limit
            assert not any(c.idle for c in conns)

        await eventually(all_busy)
        async with raw(na) as (r, _w):
            assert await closed_by_server(r, within=5)  # refused: nothing to make room
        assert service.refused == 1
        assert service.connections == limit
        for _, bw in busy:
            bw.close()


async def test_central_cache_down_hits_served_misses_unavailable():
    async with running_central_cache() as cc:
        async with insecure_channel(cc.address) as cch:
            central = SharedDataClient(cch, api_key=KEY)
            await central.set("s", b"cached")
            await central.update("s", b"never fetched", level=2)
        async with running_node_agent(cc.address) as na:
            client = reader(na)
            try:
                assert (await client.get("s", 1)).value == b"cached"
                await cc.stop(grace=0)
                assert (await client.get("s", 1)).value == b"cached"
                with pytest.raises(Unavailable, match="central cache unreachable"):
                    await client.get("s", 2, deadline_s=5)
                assert client.connected  # an answer, not a broken connection
                async with raw(na) as (r, w):
                    w.write(wire(request(9, level=2)))
                    reply, _ = await read_reply(r)
                    assert (reply.id, reply.code) == (9, 14)
            finally:
                await client.aclose()


# --- configuration and lifecycle ------------------------------------------------------------


async def test_with_tls_no_tcp_read_path_but_the_read_socket_works(pki: Pki, sock_dir: Path):
    sock = sock_dir / "r.sock"
    async with (
        running_central_cache(**pki.server()) as cc,
        running_node_agent(cc.address, read_socket=str(sock), **pki.server()) as na,
        open_channel(cc.address, tls=na.client_tls) as cch,
    ):
        assert na.read_address is None
        assert na.read_server is not None
        assert na.read_server.port is None
        await SharedDataClient(cch, api_key=KEY).set("s", b"over tls")
        client = NodeReadClient(f"unix:{sock}", api_key=KEY)
        try:
            assert (await client.get("s", 1)).value == b"over tls"
        finally:
            await client.aclose()


async def test_read_port_off_and_no_socket_serves_no_read_path():
    async with agent(read_port="off") as (_, na, central):
        assert na.read_server is None
        assert na.read_address is None
        await central.set("s", b"v")  # the gRPC agent itself still works
        async with insecure_channel(na.address) as nch:
            got = await SharedDataClient(nch, api_key=KEY, node=True).get("s", 1)
            assert got.value == b"v"


async def test_read_port_off_with_a_socket_serves_only_the_socket(sock_dir: Path):
    sock = sock_dir / "r.sock"
    async with agent(sock, read_port="off") as (_, na, central):
        assert na.read_address is None
        assert na.read_server is not None
        await central.set("s", b"v")
        client = NodeReadClient(f"unix:{sock}", api_key=KEY)
        try:
            assert (await client.get("s", 1)).value == b"v"
        finally:
            await client.aclose()


async def test_agent_stop_closes_read_connections_and_removes_the_socket(sock_dir: Path):
    sock = sock_dir / "r.sock"
    async with running_central_cache() as cc:
        async with insecure_channel(cc.address) as cch:
            await SharedDataClient(cch, api_key=KEY).set("s", b"v")
        tcp = unix = None
        try:
            async with running_node_agent(cc.address, read_socket=str(sock)) as na:
                tcp, unix = reader(na), NodeReadClient(f"unix:{sock}", api_key=KEY)
                assert (await tcp.get("s", 1)).value == b"v"
                assert (await unix.get("s", 1)).value == b"v"
                assert sock.exists()
                host, port = parse_address(na.read_address or "")
                r, w = await asyncio.open_connection(host, port)
                server = na.read_server
                assert server is not None
                assert server.service.connections == 3
            assert na.read_server is None
            assert not sock.exists()
            assert await asyncio.wait_for(r.read(), 2) == b""  # closed by the server
            w.close()
            with pytest.raises(Unavailable):
                await tcp.get("s", 1, deadline_s=3)
            with pytest.raises(Unavailable):
                await unix.get("s", 1, deadline_s=3)
            assert not tcp.connected
            assert not unix.connected
            assert server.service.connections == 0
        finally:
            for c in (tcp, unix):
                if c is not None:
                    await c.aclose()


async def test_counters_and_metrics_show_the_read_path():
    async with agent(metrics_port=0) as (_, na, central):
        await central.set("s", b"abc")
        assert na.read_server is not None
        service = na.read_server.service
        assert (service.requests, service.connections) == (0, 0)
        client = reader(na)
        try:
            await client.get("s", 1)
            await client.get("s", 1)
            with pytest.raises(SessionNotFound):
                await client.get("ghost", 1)
            assert (service.requests, service.connections) == (3, 1)

            def scrape() -> str:
                url = f"http://127.0.0.1:{na.metrics_port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    return reply.read().decode()

            text = await asyncio.to_thread(scrape)
            assert "alpcrun_node_cache_read_path_requests_total 3.0" in text
            assert "alpcrun_node_cache_read_path_connections 1.0" in text
            assert "alpcrun_node_cache_bytes_served_total 6.0" in text
        finally:
            await client.aclose()

        async def closed() -> None:
            assert service.connections == 0

        await eventually(closed, within=3)
        text = await asyncio.to_thread(scrape)
        assert "alpcrun_node_cache_read_path_connections 0.0" in text


async def test_a_read_port_in_use_is_a_config_error_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with running_central_cache() as cc:
            with pytest.raises(ConfigError, match=re.escape(f"127.0.0.1:{port}")):
                async with running_node_agent(cc.address, read_port=port):
                    pass


@pytest.mark.parametrize("read_port", ["off", 0])
async def test_a_read_socket_path_that_is_not_a_socket_is_refused_and_left_alone(
    sock_dir: Path, read_port: object
):
    """A file in the way is a ConfigError; the agent must not delete what it did not create."""
    precious = sock_dir / "precious.txt"
    precious.write_text("keep me")
    async with running_central_cache() as cc:
        with pytest.raises(ConfigError, match=re.escape(str(precious))):
            async with running_node_agent(
                cc.address, read_port=read_port, read_socket=str(precious)
            ):
                pass
    assert precious.read_text() == "keep me"
