"""Two node agents and a catalog on loopback: same-node handoff, remote writes and reads, frees."""

from __future__ import annotations

import asyncio
import mmap
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest

from alpcrun import proto
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    PayloadStateError,
    PermissionDenied,
    SessionNotFound,
)
from alpcrun.payload.agent import PayloadAgent
from alpcrun.payload.agent_service import PayloadAgentService
from alpcrun.payload.catalog import Catalog
from alpcrun.payload.catalog_link import GrpcCatalogLink
from alpcrun.payload.catalog_service import PayloadCatalogService
from alpcrun.payload.handoff import HandoffClient, HandoffServer
from alpcrun.payload.store import PayloadStore, StoreOptions
from alpcrun.payload.tiers.disk import DiskBackend
from alpcrun.payload.tiers.ram import RamBackend
from alpcrun.payload.views import MappedPayload
from alpcrun.proto.auth import ApiKeys
from alpcrun.proto.frames import frame

pytestmark = pytest.mark.integration
MiB = 1 << 20
Op = proto.PayloadFdRequest
KEY = "k"


def _open_session(session_id: str) -> None:
    if session_id not in {"s1", "s2"}:
        raise SessionNotFound(f"session {session_id!r} not found", field="session_id")


@dataclass
class Node:
    name: str
    agent: PayloadAgent
    link: GrpcCatalogLink
    address: str
    socket_path: Path
    stub: proto.PayloadAgentStub


@dataclass
class Grid:
    catalog: Catalog
    catalog_address: str
    stub: proto.PayloadCatalogStub
    nodes: dict[str, Node]

    async def put(self, node: str, data: bytes, session: str = "s1") -> proto.PayloadRef:
        """Allocate on ``node`` and write through its handoff socket, as a local producer."""
        spec = proto.PayloadSpec(size_bytes=len(data), node=node)
        reply = await self.stub.Allocate(proto.AllocateRequest(session_id=session, payloads=[spec]))
        pid = reply.payloads[0].ref.payload_id
        client = HandoffClient(str(self.nodes[node].socket_path), KEY)
        _, fd = await asyncio.to_thread(client.request, Op.OP_OPEN_WRITE, pid, session)
        with mmap.mmap(fd, len(data)) as m:
            m[:] = data
        os.close(fd)
        done, _ = await asyncio.to_thread(client.request, Op.OP_COMMIT, pid, session)
        client.close()
        return proto.PayloadRef(payload_id=pid, version=done.version, size_bytes=len(data))


async def _serve(servicer_adder, servicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    servicer_adder(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def grid(tmp_path) -> AsyncIterator[Grid]:
    """A catalog and agents n1 (RAM, disk) and n2 (RAM), each with its data path and socket."""
    catalog = Catalog()
    servers = []
    server, address = await _serve(
        proto.add_payload_catalog_servicer, PayloadCatalogService(catalog, _open_session)
    )
    servers.append(server)
    channel = grpc.aio.insecure_channel(address)
    nodes = {}
    handoffs = []
    for name, backends in (
        ("n1", [RamBackend(64 * MiB), DiskBackend(tmp_path / "disk1", 64 * MiB)]),
        ("n2", [RamBackend(64 * MiB)]),
    ):
        link = GrpcCatalogLink(channel, KEY, name)
        agent = PayloadAgent(name, backends, link)
        agent_server, agent_address = await _serve(
            proto.add_payload_agent_servicer, PayloadAgentService(agent, chunk_bytes=MiB)
        )
        servers.append(agent_server)
        handoff = HandoffServer(agent, tmp_path / f"{name}.sock", api_keys=ApiKeys([KEY]))
        await handoff.start()
        handoffs.append(handoff)
        await link.register(agent_address, agent.capacities(), agent.held_ids())
        agent_channel = grpc.aio.insecure_channel(agent_address)
        nodes[name] = Node(
            name, agent, link, agent_address, handoff.path, proto.PayloadAgentStub(agent_channel)
        )
    yield Grid(catalog, address, proto.PayloadCatalogStub(channel), nodes)
    for handoff in handoffs:
        await handoff.stop()
    for node in nodes.values():
        node.agent.close()
    await channel.close()
    for server in servers:
        await server.stop(0)


async def test_a_same_node_producer_and_reader_share_the_mapping(grid):
    """Written through a handed-over descriptor, committed, then mapped read-only by a reader."""
    data = os.urandom(3 * MiB + 5)
    ref = await grid.put("n1", data)
    assert grid.catalog.payloads[ref.payload_id].readable
    client = HandoffClient(str(grid.nodes["n1"].socket_path), KEY)
    reply, fd = await asyncio.to_thread(client.request, Op.OP_OPEN_READ, ref.payload_id, "s1")
    assert reply.size_bytes == len(data)
    with MappedPayload(fd, reply.size_bytes) as view:
        assert bytes(view.memoryview()) == data
    with pytest.raises(PayloadStateError):  # committed: immutable
        await asyncio.to_thread(client.request, Op.OP_OPEN_WRITE, ref.payload_id, "s1")
    with pytest.raises(NotFound):  # another session's
        await asyncio.to_thread(client.request, Op.OP_OPEN_READ, ref.payload_id, "s2")
    client.close()


async def test_a_producer_on_another_node_writes_in_chunks_and_a_reader_streams_it_back(grid):
    """Chunks written to n2 from elsewhere, committed by the last, read back in 1 MiB chunks."""
    data = os.urandom(2 * MiB + 100)
    spec = proto.PayloadSpec(size_bytes=len(data), node="n2")
    reply = await grid.stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=[spec]))
    pid = reply.payloads[0].ref.payload_id
    n2 = grid.nodes["n2"]

    async def chunks():
        step = MiB
        for off in range(0, len(data), step):
            last = off + step >= len(data)
            yield proto.PayloadChunk(
                payload_id=pid,
                session_id="s1",
                offset=off,
                data=data[off : off + step],
                commit=last,
            )

    written = await n2.stub.WritePayload(chunks())
    assert written.written_bytes == len(data)
    ref = written.committed.ref
    lease = (
        await grid.stub.AcquireLeases(
            proto.AcquireLeasesRequest(session_id="s1", refs=[ref], holder="w/1", node="n1")
        )
    ).leases[0]
    assert lease.replica.agent_address == n2.address
    got = [
        c
        async for c in n2.stub.ReadPayload(
            proto.ReadPayloadRequest(lease_id=lease.lease_id, ref=ref, session_id="s1")
        )
    ]
    assert len(got) == 3
    assert b"".join(c.data for c in got) == data
    part = [
        c.data
        async for c in n2.stub.ReadPayload(
            proto.ReadPayloadRequest(ref=ref, session_id="s1", offset=10, length=20)
        )
    ]
    assert part == [data[10:30]]


async def test_remote_refusals_have_their_codes(grid):
    """Oversized chunks, reads past the end and writes to committed payloads are refused."""
    ref = await grid.put("n2", b"x" * 100)
    n2 = grid.nodes["n2"]

    async def one(chunk):
        yield chunk

    big = proto.PayloadChunk(payload_id=ref.payload_id, session_id="s1", data=b"y" * (MiB + 1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await n2.stub.WritePayload(one(big))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    late = proto.PayloadChunk(payload_id=ref.payload_id, session_id="s1", data=b"y")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await n2.stub.WritePayload(one(late))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    past = proto.ReadPayloadRequest(ref=ref, session_id="s1", offset=90, length=20)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in n2.stub.ReadPayload(past):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    other = proto.ReadPayloadRequest(ref=ref, session_id="s2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in n2.stub.ReadPayload(other):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_handoff_socket_checks_keys_and_survives_garbage(grid):
    """A wrong key is PERMISSION_DENIED; a garbage frame ends that connection, not the server."""
    ref = await grid.put("n1", b"abc")
    path = str(grid.nodes["n1"].socket_path)
    wrong, right = HandoffClient(path, "wrong"), HandoffClient(path, KEY)
    with pytest.raises(PermissionDenied):
        await asyncio.to_thread(wrong.request, Op.OP_OPEN_READ, ref.payload_id, "s1")
    with pytest.raises(InvalidArgument):
        await asyncio.to_thread(right.request, Op.OP_OPEN_READ, "../../etc/passwd", "s1")

    def garbage() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(10)
            raw.connect(path)
            raw.sendall(frame(b"\xff\xff\xff"))
            return raw.recv(4096)

    reply = await asyncio.to_thread(garbage)
    assert (
        proto.PayloadFdReply.FromString(reply[4:]).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    reply, fd = await asyncio.to_thread(right.request, Op.OP_OPEN_READ, ref.payload_id, "s1")
    os.close(fd)
    assert reply.size_bytes == 3
    wrong.close()
    right.close()


async def test_deleted_payloads_are_freed_on_the_agents_heartbeat(grid):
    """The catalog's frees reach the agent that holds the bytes, which drops them."""
    ref = await grid.put("n1", b"abc")
    n1 = grid.nodes["n1"]
    assert ref.payload_id in n1.agent.held
    await grid.stub.Delete(proto.PayloadIdsRequest(session_id="s1", payload_ids=[ref.payload_id]))
    frees = await n1.link.heartbeat()
    assert n1.agent.free(frees) == 1
    assert ref.payload_id not in n1.agent.held
    assert n1.agent.backends[next(iter(n1.agent.backends))].statistics().payloads == 0


async def test_the_store_puts_and_opens_arrays_zero_copy_on_its_node_and_over_the_network(grid):
    """On n1 a put array comes back as a mapped view; from a node without an agent, a copy."""
    channel = grpc.aio.insecure_channel(grid.catalog_address)
    local = PayloadStore(
        channel,
        "s1",
        StoreOptions(api_key=KEY, node="n1", agent_socket=str(grid.nodes["n1"].socket_path)),
    )
    remote = PayloadStore(channel, "s1", StoreOptions(api_key=KEY))
    arr = np.arange(600_000, dtype=np.float32).reshape(1000, 600)
    ref = await local.put(arr)
    assert grid.catalog.payloads[ref.payload_id].replicas[0].node == "n1"
    async with await local.open(ref) as view:
        assert view.zero_copy
        got = view.array()
        assert got.shape == (1000, 600)
        assert got.dtype == np.float32
        assert not got.flags.writeable
        assert np.array_equal(got, arr)
        del got
    async with await remote.open(ref) as view:
        assert not view.zero_copy
        assert np.array_equal(view.array(), arr)
    other = await remote.put(b"from elsewhere")
    assert await local.get(other) == b"from elsewhere"
    await local.delete([ref, other])
    assert grid.catalog.payloads == {}
    assert len(grid.catalog.leases) == 0
    await local.close()
    await remote.close()
    await channel.close()
