"""The PayloadCatalog service over real gRPC: batched lifecycle calls, agents, status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from alpcrun import proto
from alpcrun.constants import MD_ERROR_FIELD
from alpcrun.errors import SessionNotFound
from alpcrun.payload.catalog import Catalog, CatalogLimits
from alpcrun.payload.catalog_service import PayloadCatalogService
from alpcrun.testing import FakeClock

pytestmark = pytest.mark.integration
MiB = 1 << 20
RAM, DISK = proto.PayloadTier.PAYLOAD_TIER_RAM, proto.PayloadTier.PAYLOAD_TIER_DISK


def _open_session(session_id: str) -> None:
    if session_id not in {"s1", "s2"}:
        raise SessionNotFound(f"session {session_id!r} not found", field="session_id")


@pytest.fixture
async def catalog() -> AsyncIterator[tuple[Catalog, proto.PayloadCatalogStub]]:
    """A catalog served on a real grpc.aio server on port 0, and a stub to it."""
    cat = Catalog(limits=CatalogLimits(session_quota_bytes=8 * MiB), clock=FakeClock())
    server = grpc.aio.server()
    proto.add_payload_catalog_servicer(PayloadCatalogService(cat, _open_session), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield cat, proto.PayloadCatalogStub(channel)
    await server.stop(0)


async def _register(stub, node: str, ram: int = 16 * MiB, disk: int = 0) -> None:
    tiers = [proto.TierCapacity(tier=RAM, capacity_bytes=ram)]
    if disk:
        tiers.append(proto.TierCapacity(tier=DISK, capacity_bytes=disk))
    await stub.RegisterAgent(
        proto.RegisterAgentRequest(node=node, agent_address=f"{node}:3339", tiers=tiers)
    )


async def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    field = dict(err.value.trailing_metadata() or ()).get(MD_ERROR_FIELD, "")
    return err.value.code(), field


async def test_many_payloads_go_through_their_lifecycle_in_one_call_each(catalog):
    """Allocate, commit, resolve and lease 100 payloads with one call each; frees reach agents."""
    cat, stub = catalog
    await _register(stub, "n1")
    await _register(stub, "n2")
    specs = [proto.PayloadSpec(size_bytes=1024, node="n2", meta={"i": str(i)}) for i in range(100)]
    allocated = await stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=specs))
    assert [p.replicas[0].node for p in allocated.payloads] == ["n2"] * 100
    assert allocated.payloads[0].replicas[0].agent_address == "n2:3339"
    entries = [
        proto.CommitEntry(payload_id=p.ref.payload_id, size_bytes=1024) for p in allocated.payloads
    ]
    committed = await stub.Commit(proto.CommitRequest(session_id="s1", payloads=entries))
    assert all(p.state == proto.PayloadState.PAYLOAD_STATE_COMMITTED for p in committed.payloads)
    refs = [p.ref for p in committed.payloads]
    resolved = await stub.Resolve(
        proto.PayloadIdsRequest(session_id="s1", payload_ids=[r.payload_id for r in refs])
    )
    assert [p.meta["i"] for p in resolved.payloads] == [str(i) for i in range(100)]
    leases = await stub.AcquireLeases(
        proto.AcquireLeasesRequest(session_id="s1", refs=refs, holder="w1/1", node="n1")
    )
    assert len(leases.leases) == 100
    assert leases.leases[0].replica.agent_address == "n2:3339"
    deleted = await stub.Delete(
        proto.PayloadIdsRequest(session_id="s1", payload_ids=[r.payload_id for r in refs[:10]])
    )
    assert (deleted.deleted, deleted.deferred) == (0, 10)  # leased: they wait
    await stub.ReleaseLeases(proto.ReleaseLeasesRequest(holder="w1/1"))
    beat = await stub.AgentHeartbeat(proto.AgentHeartbeatRequest(node="n2"))
    assert len(beat.free) == 10
    usage = await stub.GetPayloadUsage(proto.GetPayloadUsageRequest())
    assert usage.payloads == 90
    assert usage.committed_bytes == 90 * 1024
    assert len(cat.leases) == 0


async def test_refusals_carry_the_right_code_and_name_the_entry(catalog):
    """Unknown ids, wrong sizes, second commits, stale versions, quotas: each its own code."""
    _, stub = catalog
    await _register(stub, "n1")
    one = proto.PayloadSpec(size_bytes=MiB, node="n1")
    (p,) = (await stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=[one]))).payloads
    pid = p.ref.payload_id
    wrong = proto.CommitEntry(payload_id=pid, size_bytes=MiB - 1)
    assert await _status(stub.Commit(proto.CommitRequest(session_id="s1", payloads=[wrong]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "payloads[0].size",
    )
    right = proto.CommitEntry(payload_id=pid, size_bytes=MiB)
    assert await _status(stub.Commit(proto.CommitRequest(session_id="s2", payloads=[right]))) == (
        grpc.StatusCode.NOT_FOUND,
        "payloads[0].id",
    )  # another session's payload
    committed = await stub.Commit(proto.CommitRequest(session_id="s1", payloads=[right]))
    assert await _status(stub.Commit(proto.CommitRequest(session_id="s1", payloads=[right]))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "payloads[0].id",
    )
    stale = proto.PayloadRef(payload_id=pid, version=committed.payloads[0].ref.version - 1)
    assert await _status(
        stub.AcquireLeases(proto.AcquireLeasesRequest(session_id="s1", refs=[stale], holder="h"))
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "refs[0].version")
    assert await _status(
        stub.Resolve(proto.PayloadIdsRequest(session_id="s1", payload_ids=[pid, "nope"]))
    ) == (grpc.StatusCode.NOT_FOUND, "payload_ids[1]")
    big = proto.PayloadSpec(size_bytes=8 * MiB, node="n1")
    code, _ = await _status(stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=[big])))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await _status(
        stub.Allocate(proto.AllocateRequest(session_id="nope", payloads=[one]))
    ) == (grpc.StatusCode.NOT_FOUND, "session_id")
    bad_tier = proto.PayloadSpec(size_bytes=1, tier=99)
    assert await _status(
        stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=[bad_tier]))
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "payloads[0].tier")


async def test_a_lost_node_makes_its_payloads_unreadable_over_the_wire(catalog):
    """An agent re-registering without its RAM payloads: resolving them is NOT_FOUND, named."""
    _, stub = catalog
    await _register(stub, "n1")
    spec = proto.PayloadSpec(size_bytes=10, node="n1")
    (p,) = (await stub.Allocate(proto.AllocateRequest(session_id="s1", payloads=[spec]))).payloads
    entry = proto.CommitEntry(payload_id=p.ref.payload_id, size_bytes=10)
    await stub.Commit(proto.CommitRequest(session_id="s1", payloads=[entry]))
    await _register(stub, "n1")  # restarted: holds nothing
    assert await _status(
        stub.Resolve(proto.PayloadIdsRequest(session_id="s1", payload_ids=[p.ref.payload_id]))
    ) == (grpc.StatusCode.NOT_FOUND, "payload_ids[0]")
    listed = await stub.ListPayloads(proto.ListPayloadsRequest(session_id="s1"))
    assert listed.payloads[0].replicas[0].lost
