"""Shared data through the SDKs: client uploads, batches marked, workers read via the node agent."""

from __future__ import annotations

import pytest

from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings
from alpcrun.errors import SessionNotFound, SharedDataExists
from alpcrun.testing import running_central_cache, running_node_agent, running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerHarness
from workers_sdk.runner import WorkerRunner
from workers_sdk.testing import SyncWorkerHarness

from .test_worker_runner import KEY, running, settings

pytestmark = pytest.mark.integration


class SharedEcho(Worker):
    """Answers ``<level>:<shared data>:<payload>``."""

    async def handle(self, task: TaskContext) -> bytes:
        return b"%d:%s:%s" % (task.shared_data_level, task.shared_data(), task.payload)


class SyncSharedEcho(Worker):
    def handle(self, task: TaskContext) -> bytes:  # type: ignore[override]
        return b"%d:%s" % (task.shared_data_level, task.shared_data())


def client_settings(qm: str, cc: str) -> ClientSettings:
    return ClientSettings(queue_manager=qm, central_cache=cc, api_key=KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize("node_agent_up", [True, False])
async def test_levels_reach_workers_through_the_node_agent_or_the_central_cache(node_agent_up):
    async with (
        running_queue_manager(api_key=KEY) as qm,
        running_central_cache(api_key=KEY, queue_manager=qm.address) as cc,
        running_node_agent(cc.address, api_key=KEY) as na,
    ):
        node_addr = na.address if node_agent_up else "127.0.0.1:1"  # nothing listens on 1
        runner = WorkerRunner(
            SharedEcho(), settings(qm.address, node_agent=node_addr, central_cache=cc.address)
        )
        async with (
            running(runner),
            AsyncClient(settings=client_settings(qm.address, cc.address)) as client,
            client.session(app_id="shared") as session,
        ):
            assert await session.set_shared_data(b"market-1", ttl=60) == 1
            first = [r.payload async for r in session.map([b"a", b"b"], ordered=True)]
            assert first == [b"1:market-1:a", b"1:market-1:b"]
            assert await session.update_shared_data(b"market-2") == 2
            assert await (await session.submit(b"c")) == b"2:market-2:c"
            with pytest.raises(SharedDataExists):
                await session.set_shared_data(b"again")
            session_id = session.id
        assert na.cache is not None
        fetches = na.cache.statistics().central_fetches
        assert fetches == (2 if node_agent_up else 0)
        with pytest.raises(SessionNotFound):  # closing the session deleted its shared data
            cc.store.get(session_id, 2)


async def test_harness_serves_shared_data_to_sync_handlers():
    async with WorkerHarness(SyncSharedEcho(), shared_data=b"curve") as h:
        assert await h.run(b"x") == b"1:curve"


async def test_without_shared_data_the_call_says_so():
    async with WorkerHarness(SharedEcho()) as h:
        (result,) = await h.run_batch([b"x"])
    assert isinstance(result.exception, LookupError)
    assert "set_shared_data" in str(result.exception)


def test_sync_harness_takes_shared_data_too():
    with SyncWorkerHarness(SyncSharedEcho(), shared_data=b"fx") as h:
        assert h.run(b"y") == b"1:fx"
