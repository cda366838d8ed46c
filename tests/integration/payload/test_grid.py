"""Payloads through a real queue manager, a node's payload store, the client SDK and a worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import numpy as np
import pytest

from alpcrun.client import AsyncClient, TaskInput
from alpcrun.config import ClientSettings, WorkerSettings
from alpcrun.errors import ResourceExhausted
from alpcrun.payload.node import PayloadNode, PayloadNodeConfig
from alpcrun.proto import ErrorReason
from alpcrun.testing import running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerRunner

pytestmark = pytest.mark.integration
KEY = "payload-key"
MiB = 1 << 20


class Doubler(Worker):
    """Reads the task's array, puts twice it, answers with the sum and whether it copied."""

    def handle(self, task: TaskContext) -> bytes:
        (ref,) = task.refs
        with task.open(ref) as view:
            arr = view.array()
            task.put(arr * 2)
            return f"{float(arr.sum())}:{view.zero_copy}".encode()


@contextlib.asynccontextmanager
async def payload_node(tmp_path, qm_address: str, name: str) -> AsyncIterator[PayloadNode]:
    """A node agent's payload store on its own gRPC server, registered with the catalog."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    config = PayloadNodeConfig(
        node=name,
        ram_bytes=256 * MiB,
        disk_dir=tmp_path / f"{name}-disk",
        disk_bytes=256 * MiB,
        socket=tmp_path / f"{name}.sock",
    )
    async with grpc.aio.insecure_channel(qm_address) as channel:
        node = PayloadNode(config, channel, KEY)
        node.add_services(server)
        await server.start()
        await node.start(f"127.0.0.1:{port}")
        await asyncio.wait_for(node.registered.wait(), 10)
        try:
            yield node
        finally:
            await node.stop()
            await server.stop(0)


@contextlib.asynccontextmanager
async def worker(qm_address: str, node: PayloadNode) -> AsyncIterator[WorkerRunner]:
    """A real WorkerRunner on ``node``, using its payload socket."""
    settings = WorkerSettings(
        queue_manager=qm_address,
        api_key=KEY,
        node=node.config.node,
        payload_socket=str(node.config.socket),
        node_agent=None,
        central_cache=None,
        reconnect_delay=0.05,
    )
    runner = WorkerRunner(Doubler(), settings)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 30)


async def test_tasks_read_and_write_payloads_zero_copy_on_their_node(tmp_path):
    """The client puts on n1, the worker on n1 maps it and puts twice it; every byte checked."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        payload_node(tmp_path, qm.address, "n1") as n1,
        worker(qm.address, n1),
    ):
        client_settings = ClientSettings(
            queue_manager=qm.address, api_key=KEY, node="n1", payload_socket=str(n1.config.socket)
        )
        async with (
            AsyncClient(settings=client_settings) as client,
            client.session(app_id="payloads") as session,
        ):
            arrays = [np.full((256, 256), i, dtype=np.float64) for i in range(8)]  # 512 KiB each
            refs = await session.put_many(arrays)
            inputs = [TaskInput(b"", (ref,)) for ref in refs]
            results = [r async for r in session.map(inputs, ordered=True)]
            for i, result in enumerate(results):
                total, zero_copy = result.value().decode().split(":")
                assert float(total) == float(arrays[i].sum())
                assert zero_copy == "True"
                (out,) = result.refs
                async with session.open(out) as view:
                    assert view.zero_copy
                    assert np.array_equal(view.array(), arrays[i] * 2)
            assert qm.catalog.statistics().committed == 16
        for _ in range(100):  # the session closed: its payloads go on the next ticks
            if not qm.catalog.payloads:
                break
            await asyncio.sleep(0.05)
        assert qm.catalog.payloads == {}
        assert len(qm.catalog.leases) == 0


async def test_a_task_whose_payload_is_gone_is_dead_lettered_with_the_payload_reason(tmp_path):
    """A reference to a deleted payload fails its task at once: payload_lost, no retries."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        payload_node(tmp_path, qm.address, "n1") as n1,
        worker(qm.address, n1),
    ):
        settings = ClientSettings(queue_manager=qm.address, api_key=KEY)
        async with (
            AsyncClient(settings=settings) as client,
            client.session(app_id="gone", max_attempts=3) as session,
        ):
            ref = await session.put(np.zeros(4))
            await session.delete(ref)
            (result,) = [r async for r in session.map([TaskInput(b"", (ref,))])]
            assert result.error is not None
            assert result.error.reason == ErrorReason.ERROR_REASON_PAYLOAD_LOST
            letters = await session.dead_letters()
            assert [letter.error.reason for letter in letters] == [
                ErrorReason.ERROR_REASON_PAYLOAD_LOST
            ]
            assert letters[0].error.type == "PayloadLost"


async def test_a_sessions_payload_quota_is_refused_naming_it(tmp_path):
    """Over payload_quota a put is RESOURCE_EXHAUSTED naming the quota; nothing is held."""
    async with (
        running_queue_manager(api_key=KEY, payload_quota=MiB) as qm,
        payload_node(tmp_path, qm.address, "n1"),
    ):
        settings = ClientSettings(queue_manager=qm.address, api_key=KEY)
        async with AsyncClient(settings=settings) as client, client.session(app_id="q") as session:
            await session.put(b"x" * (MiB // 2))
            with pytest.raises(ResourceExhausted, match="payload_quota"):
                await session.put(b"x" * MiB)
            assert qm.catalog.session_bytes(session.id) == MiB // 2
