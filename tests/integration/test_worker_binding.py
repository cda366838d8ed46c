"""Binds that do not turn into a WorkerStream, against a real queue manager on port 0.

A raw worker that takes BIND and never opens its stream must not hold a session's only slot;
one that reports it missed its BIND gets it again; and the worker SDK must serve a BIND that
arrives while its previous stream for the same session is still winding down (real
``WorkerRunner`` workers, ``max_workers`` toggled within milliseconds, round after round).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from alpcrun import proto
from alpcrun.testing import running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerRunner

from .test_worker_runner import KEY, MD, Client, running, settings
from .wire import ManualWorker

pytestmark = pytest.mark.integration
BIND = proto.WorkerInstruction.TYPE_BIND


class Upper(Worker):
    async def handle(self, task: TaskContext) -> bytes:
        return task.payload.upper()


class Pairs(Worker):
    """Answers a task only once another worker's handler runs at the same time.

    A round of an even number of one-task batches therefore completes only while both
    workers of the test serve the session: one worker left idle stalls the round.
    """

    def __init__(self, barrier: asyncio.Barrier) -> None:
        self.barrier = barrier

    async def handle(self, task: TaskContext) -> bytes:
        await self.barrier.wait()
        return task.payload


async def _update(client: Client, **attributes: int) -> None:
    request = proto.UpdateSessionRequest(
        session_id=client.session_id, attributes=proto.SessionAttributes(**attributes)
    )
    await client.stub.UpdateSession(request, metadata=MD)


async def test_a_worker_that_never_opens_its_stream_loses_the_slot_to_a_waiting_worker():
    """max_workers 1, the bound worker opens no stream: it is dropped and the real one serves."""
    async with (
        running_queue_manager(
            api_key=KEY, bind_stream_timeout=1.0, scheduler_interval=0.05, min_bind_time=0.0
        ) as qm,
        grpc.aio.insecure_channel(qm.address) as channel,
    ):
        silent = ManualWorker(channel, MD)
        await silent.register()
        client = Client(channel)
        await client.open()
        await _update(client, max_workers=1)
        await client.submit("a", [b"one", b"two"])
        assert await silent.bound() == client.session_id  # and it never opens WorkerStream
        runner = WorkerRunner(Upper(), settings(qm.address))
        async with running(runner):
            got = await client.results(2, within=20)
            assert [got["a-0"].payload, got["a-1"].payload] == [b"ONE", b"TWO"]
            assert await asyncio.wait_for(silent.update.code(), 10) == grpc.StatusCode.OK
            assert silent.id not in qm.core.workers
            assert qm.core.workers_lost == 1
            await client.close()
        await silent.stop()


async def test_a_worker_reporting_idle_while_bound_gets_its_bind_again():
    """A bound worker without a stream that heartbeats IDLE is sent BIND again and can serve."""
    async with (
        running_queue_manager(
            api_key=KEY, heartbeat_interval=0.5, bind_stream_timeout=60.0, min_bind_time=0.0
        ) as qm,
        grpc.aio.insecure_channel(qm.address) as channel,
    ):
        worker = ManualWorker(channel, MD)
        await worker.register()
        client = Client(channel)
        session_id = await client.open()
        await client.submit("a", [b"one"])
        assert await worker.bound() == session_id  # a BIND it "misses"
        await asyncio.sleep(0.6)
        worker.heartbeat(proto.WorkerState.WORKER_STATE_IDLE)
        assert await worker.bound() == session_id
        worker.open_stream(session_id)
        batch = await worker.next_batch()
        worker.send(proto.Batch(id=batch.id, dispatch_id=batch.dispatch_id, tasks=batch.tasks))
        assert (await client.results(1))["a-0"].payload == b"one"
        await client.close()
        await worker.stop()


@pytest.mark.timeout(120)  # a stalled round is reported at its own deadline, well before this
async def test_a_rebind_while_the_old_stream_winds_down_is_served_round_after_round():
    """max_workers 2 → 1 → 2 within milliseconds, 20 rounds: every round completes.

    Each round's tasks need both workers at once, so a worker that dropped its new BIND (the
    queue manager had ended its stream, the SDK had not yet seen it) stalls the round. The
    queue manager's own remedies are set far beyond the round deadline: only the SDK counts.
    """
    async with (
        running_queue_manager(
            api_key=KEY,
            min_bind_time=0.0,
            heartbeat_interval=60.0,
            worker_timeout=300.0,
            bind_stream_timeout=300.0,
        ) as qm,
        grpc.aio.insecure_channel(qm.address) as channel,
    ):
        barrier = asyncio.Barrier(2)
        runners = [WorkerRunner(Pairs(barrier), settings(qm.address, concurrency=1)) for _ in "ab"]
        async with running(runners[0]), running(runners[1]):
            client = Client(channel)
            await client.open()
            await _update(client, max_workers=2, max_inflight_batches_per_worker=1)
            for rnd in range(20):
                for b in range(4):
                    await client.submit(f"r{rnd}b{b}", [b"x"])
                for _ in range(3):
                    await _update(client, max_workers=1)
                    await _update(client, max_workers=2)
                try:
                    await client.results(4, within=15)
                except TimeoutError:
                    workers = [
                        (w.phase.value, w.data is not None, len(w.inflight))
                        for w in qm.core.workers.values()
                    ]
                    pytest.fail(
                        f"round {rnd} stalled; workers (phase, stream, inflight): {workers}"
                    )
            await client.close()
