"""The scheduler against a real queue manager with hundreds of in-process worker connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from alpcrun import proto
from alpcrun.testing import running_queue_manager

from .sim import Ledger, RawClient, SimWorker, until

pytestmark = pytest.mark.integration
KEY = "sched-key"
MD = (("api_key", KEY),)


@contextlib.asynccontextmanager
async def grid(**overrides) -> AsyncIterator:
    overrides.setdefault("scheduler_interval", 0.1)
    overrides.setdefault("min_bind_time", 0)
    async with running_queue_manager(api_key=KEY, **overrides) as qm:
        channels = [grpc.aio.insecure_channel(qm.address) for _ in range(8)]
        tasks: list[asyncio.Task] = []
        try:
            yield qm, channels, tasks
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in channels:
                await c.close()


def start_workers(channels, tasks, ledger, n, **kw) -> list[SimWorker]:
    workers = [SimWorker(channels[i % len(channels)], MD, ledger, **kw) for i in range(n)]
    tasks.extend(asyncio.create_task(w.run()) for w in workers)
    return workers


async def create(channel, **attrs) -> str:
    attrs.setdefault("app_id", "sim")
    session = await proto.QueueStub(channel).CreateSession(
        proto.CreateSessionRequest(attributes=proto.SessionAttributes(**attrs)), metadata=MD
    )
    return session.id


async def test_mixed_priorities_get_the_documented_shares_and_everything_completes():
    """200 workers: priority 8 capped at 50, two priority-5 sessions split the rest evenly,
    priority 1 waits (and says why), then gets the workers; every task delivered once."""
    ledger = Ledger()
    async with grid() as (qm, channels, tasks):
        ch = channels[0]
        specs = {
            "high": {"priority": 8, "max_workers": 50},
            "a": {"priority": 5},
            "b": {"priority": 5},
            "low": {"priority": 1},
        }
        sids = {}
        clients = {}
        expected = []
        for name, attrs in specs.items():
            sids[name] = await create(ch, max_inflight_batches_per_worker=1, **attrs)
            clients[name] = RawClient(ch, MD, sids[name], ledger)
            expected += clients[name].send(200 if name == "high" else 400, 2, name)
        await until(lambda: all(len(s.queue) for s in qm.core.sessions.values()))
        start_workers(channels, tasks, ledger, 200, delay=0.2)
        await until(lambda: sum(s.active_workers() for s in qm.core.sessions.values()) == 200)
        bound = {n: qm.core.sessions[sid].active_workers() for n, sid in sids.items()}
        assert bound == {"high": 50, "a": 75, "b": 75, "low": 0}

        admin = proto.AdminStub(ch)
        listing = await admin.ListSessions(proto.ListSessionsRequest(), metadata=MD)
        info = {i.session.id: i.stats for i in listing.sessions}
        assert info[sids["low"]].waiting_code == "lower_priority"
        assert info[sids["high"]].waiting_code == "max_workers"
        assert info[sids["low"]].wanted_workers == 400
        assert info[sids["a"]].bound_workers == 75

        for c in clients.values():
            await c.wait_for(400 if c is clients["high"] else 800, within=30)
        assert set(ledger.delivered) == set(expected)
        assert max(ledger.delivered.values()) == 1
        assert qm.core.sessions[sids["low"]].completed == 800


async def test_preemption_moves_workers_to_a_starved_higher_priority_session_losing_nothing():
    ledger = Ledger()
    async with grid() as (qm, channels, tasks):
        ch = channels[0]
        start_workers(channels, tasks, ledger, 100, delay=0.05)
        await until(lambda: len(qm.core.workers) == 100)
        low = await create(ch, priority=1, preemptible=True, max_inflight_batches_per_worker=2)
        low_client = RawClient(ch, MD, low, ledger)
        expected = low_client.send(4000, 5, "low")
        record = qm.core.sessions[low]
        await until(
            lambda: record.active_workers() == 100,
            state=lambda: (record.active_workers(), len(record.queue), record.completed),
        )

        high = await create(ch, priority=9, max_workers=60)
        high_client = RawClient(ch, MD, high, ledger)
        expected += high_client.send(300, 5, "high")
        await until(lambda: qm.core.sessions[high].active_workers() == 60, within=5)
        assert qm.core.sessions[low].preempted >= 60
        assert qm.core.sessions[low].active_workers() <= 40

        await high_client.wait_for(1500, within=30)
        await low_client.wait_for(20_000, within=60)
        assert set(ledger.delivered) == set(expected)
        assert max(ledger.delivered.values()) == 1  # nothing delivered twice
        assert all(ledger.executed[t] >= 1 for t in expected)
        for sid in (low, high):
            assert len(qm.core.sessions[sid].dead_letters) == 0
        # The low session got its workers back once the high one ran out of work.
        await until(lambda: qm.core.sessions[high].active_workers() == 0, within=5)


async def test_update_session_takes_effect_live():
    ledger = Ledger()
    async with grid() as (qm, channels, tasks):
        ch = channels[0]
        stub = proto.QueueStub(ch)
        sid = await create(ch, max_workers=10, max_inflight_batches_per_worker=1)
        client = RawClient(ch, MD, sid, ledger)
        client.send(3000, 1, "s")
        start_workers(channels, tasks, ledger, 50, delay=0.02)
        gpu = start_workers(channels, tasks, ledger, 10, delay=0.02, labels={"gpu": "true"})
        record = qm.core.sessions[sid]
        await until(lambda: record.active_workers() == 10)

        async def update(**attrs):
            await stub.UpdateSession(
                proto.UpdateSessionRequest(
                    session_id=sid, attributes=proto.SessionAttributes(**attrs)
                ),
                metadata=MD,
            )

        await update(max_workers=40)
        await until(lambda: record.active_workers() == 40, within=1.0)
        await update(max_workers=5)
        await until(lambda: record.active_workers() == 5, within=1.0)
        await update(max_workers=0, worker_selector={"gpu": "true"})
        await until(
            lambda: (
                record.active_workers() == 10
                and {w.id for w in record.workers.values() if w.phase.value == "bound"}
                == {w.id for w in gpu}
            ),
            within=2.0,
        )
        await stub.CloseSession(proto.CloseSessionRequest(session_id=sid), metadata=MD)
        await until(lambda: not record.workers, within=2.0)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await update(priority=9)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_reattached_client_receives_every_result_not_acknowledged():
    """A client cut mid-stream re-attaches by session id and gets all the remaining results."""
    ledger = Ledger()
    async with grid() as (qm, channels, tasks):
        ch = channels[0]
        sid = await create(ch)
        first = RawClient(ch, MD, sid, ledger)
        expected = first.send(500, 2, "r")
        await until(lambda: qm.core.sessions[sid].submitted == 1000)
        start_workers(channels, tasks, ledger, 20, delay=0.005)
        await first.wait_for(200, within=10)
        first.cut()
        await until(lambda: qm.core.sessions[sid].client is None)
        await until(lambda: qm.core.sessions[sid].completed == 1000, within=20)
        assert not qm.core.sessions[sid].closed
        second = RawClient(ch, MD, sid, ledger)
        await until(lambda: set(ledger.delivered) == set(expected), within=10)
        # Only batches written but not acknowledged before the cut can arrive twice.
        assert max(ledger.delivered.values()) <= 2
        assert second.received <= 1000 - first.received + 2 * 100
        second.cut()
