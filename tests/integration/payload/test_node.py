"""A node's payload store registers with the catalog, serves puts, and reports losses on restart."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from alpcrun.errors import NotFound, SessionNotFound
from alpcrun.payload.catalog import Catalog, CatalogLimits
from alpcrun.payload.catalog_service import PayloadCatalogService
from alpcrun.payload.node import PayloadNode, PayloadNodeConfig
from alpcrun.payload.store import PayloadStore, StoreOptions
from alpcrun.payload.types import Tier
from alpcrun.proto import add_payload_catalog_servicer

pytestmark = pytest.mark.integration
MiB = 1 << 20


def _open_session(session_id: str) -> None:
    if session_id != "s1":
        raise SessionNotFound(f"session {session_id!r} not found", field="session_id")


async def _node(tmp_path, channel, name="n1", *, disk: bool = True) -> PayloadNode:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    config = PayloadNodeConfig(
        node=name,
        ram_bytes=16 * MiB,
        disk_dir=tmp_path / f"{name}-disk" if disk else None,
        disk_bytes=16 * MiB,
        socket=tmp_path / f"{name}.sock",
    )
    node = PayloadNode(config, channel, "k")
    node.add_services(server)
    await server.start()
    node._server = server  # type: ignore[attr-defined]  # stopped with the node in the test
    await node.start(f"127.0.0.1:{port}")
    await asyncio.wait_for(node.registered.wait(), 10)
    return node


async def _stop(node: PayloadNode) -> None:
    await node.stop()
    await node._server.stop(0)  # type: ignore[attr-defined]


async def test_a_restarted_node_keeps_disk_payloads_and_loses_ram_ones(tmp_path):
    """After a restart the node re-registers: its disk payload is read again, its RAM one lost."""
    catalog = Catalog(limits=CatalogLimits())
    server = grpc.aio.server()
    add_payload_catalog_servicer(PayloadCatalogService(catalog, _open_session), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        node = await _node(tmp_path, channel)
        store = PayloadStore(
            channel,
            "s1",
            StoreOptions(api_key="k", node="n1", agent_socket=str(node.config.socket)),
        )
        in_ram = await store.put(b"r" * 1000)
        on_disk = await store.put(b"d" * 1000, tier=Tier.DISK)
        await _stop(node)
        again = await _node(tmp_path, channel)
        store2 = PayloadStore(
            channel,
            "s1",
            StoreOptions(api_key="k", node="n1", agent_socket=str(again.config.socket)),
        )
        assert await store2.get(on_disk) == b"d" * 1000
        with pytest.raises(NotFound):
            await store2.get(in_ram)
        await store.close()
        await store2.close()
        await _stop(again)
    await server.stop(0)
