"""Streams cut mid-message, channels closed abruptly, shutdown, messages too big.

The queue manager must forget a client or worker whose connection died in the middle of a
message, keep what it had accepted and nothing more, answer UNAVAILABLE while it shuts down,
and refuse a batch it could accept but never forward (dispatch to a worker, or deliver to a
client) within the message limit rather than let it fail every stream after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alpcrun import proto
from alpcrun.constants import MAX_MESSAGE_BYTES
from alpcrun.queue_manager import QueueManager
from alpcrun.queue_manager.servicer import FORWARD_HEADROOM_BYTES
from alpcrun.testing import running_queue_manager

from .checks import (
    KEY,
    LIMIT,
    MD,
    UNKNOWN,
    Grid,
    bound_worker,
    eventually,
    finish_round,
    qm_settings,
    redelivered,
    with_session,
)
from .wire import ManualWorker, RawHttp2, call, echo, finish, grpc_message, method, path, start

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_error_logs")]
Code = grpc.StatusCode
CSR = proto.ClientStreamRequest


@pytest.fixture
async def qm() -> AsyncIterator[QueueManager]:
    async with running_queue_manager(**qm_settings()) as qm:
        yield qm


@pytest.fixture
async def grid(qm: QueueManager) -> AsyncIterator[Grid]:
    async with grpc.aio.insecure_channel(qm.address) as channel:
        yield Grid(channel, MD)


def one_task(batch_id: str, payload: bytes = b"p") -> proto.Batch:
    return proto.Batch(id=batch_id, tasks=[proto.Task(id=f"{batch_id}-t", payload=payload)])


async def attached(grid: Grid, sid: str, *, expected: bool = True) -> None:
    async def check() -> None:
        assert (await grid.info(sid)).stats.client_attached is expected

    await eventually(check)


# ---------------------------------------------------------------------- dropped mid-write
@pytest.mark.parametrize("how", ["cancel", "close channel"])
async def test_client_dropped_while_writing_large_batches(
    qm: QueueManager, grid: Grid, how: str
) -> None:
    """A client dropped while backpressure holds its large batches: accepted ones stay queued."""
    sid = await grid.create()
    written = 0
    async with grpc.aio.insecure_channel(qm.address) as victim:

        async def requests() -> AsyncIterator[proto.ClientStreamRequest]:
            nonlocal written
            for i in range(40):
                yield CSR(batch=one_task(f"big{i}", b"x" * (LIMIT - 4096)))
                written += 1

        stream = proto.QueueStub(victim).ClientStream(requests(), metadata=with_session(sid))

        async def paused() -> None:  # two batches fill max_pending_bytes; reading stops
            info = await grid.info(sid)
            assert (info.stats.client_attached, info.stats.submitted_tasks) == (True, 2)

        await eventually(paused)
        await asyncio.sleep(0.1)
        assert 2 <= written < 40  # the client is stuck in the middle of its batches
        if how == "cancel":
            stream.cancel()
        else:
            await victim.close(None)
    await attached(grid, sid, expected=False)
    info = await grid.info(sid)
    assert (info.stats.pending_tasks, info.stats.submitted_tasks) == (2, 2)
    assert await grid.close(sid) == 2
    await grid.healthy()


async def test_worker_dropped_while_writing_a_large_result(qm: QueueManager, grid: Grid) -> None:
    """A worker whose channel closes mid-result is lost; its batch is done or queued again."""
    sid = await grid.create()
    submit = start(
        grid.channel,
        method("ClientStream"),
        [CSR(batch=one_task("b"))],
        with_session(sid),
        half_close=False,
        timeout=None,
    )
    async with grpc.aio.insecure_channel(qm.address) as victim:
        worker = ManualWorker(victim, MD)
        await worker.register()
        assert await worker.bound() == sid
        worker.open_stream(sid)
        result = echo(await worker.next_batch())
        result.tasks[0].payload = b"r" * (LIMIT - 8 * FORWARD_HEADROOM_BYTES)
        worker.send(result)
        await asyncio.sleep(0)
        await victim.close(None)

    async def settled() -> None:
        assert await grid.workers() == []
        info = await grid.info(sid)
        assert info.stats.inflight_tasks == 0
        assert info.stats.completed_tasks + info.stats.pending_tasks == 1, info

    await eventually(settled)
    submit.cancel()
    await grid.close(sid)
    await grid.healthy()


# ---------------------------------------------------------------------- bare HTTP/2
@pytest.mark.parametrize("how", ["reset", "close"])
async def test_client_stream_cut_mid_message(qm: QueueManager, grid: Grid, how: str) -> None:
    """A connection cut halfway through a batch: the client is detached, nothing accepted."""
    sid = await grid.create()
    conn = await RawHttp2.connect(qm.address)
    await conn.start_call(path(method("ClientStream")), [("api_key", KEY), ("sessionid", sid)])
    await attached(grid, sid)
    message = grpc_message(CSR(batch=one_task("b", b"x" * 50_000)).SerializeToString())
    await conn.send(message[: len(message) // 2])
    if how == "reset":
        conn.cut()
    else:
        conn.close()
    await attached(grid, sid, expected=False)
    assert (await grid.info(sid)).stats.submitted_tasks == 0
    await grid.round_trip(sid)
    await grid.close(sid)
    await grid.healthy()


async def test_declared_length_over_the_limit_ends_the_stream(qm: QueueManager, grid: Grid) -> None:
    """A message announcing more bytes than the limit: the server ends the stream at once."""
    sid = await grid.create()
    conn = await RawHttp2.connect(qm.address)
    await conn.start_call(path(method("ClientStream")), [("api_key", KEY), ("sessionid", sid)])
    await attached(grid, sid)
    await conn.send(grpc_message(b"\x0a" * 1000, declared=2**31))
    assert await conn.stream_ended()
    await attached(grid, sid, expected=False)
    conn.cut()
    await grid.close(sid)
    await grid.healthy()


async def test_worker_cut_mid_message_is_lost(qm: QueueManager, grid: Grid) -> None:
    """A worker whose connection dies halfway through a heartbeat is no longer registered."""
    conn = await RawHttp2.connect(qm.address)
    await conn.start_call(path(method("WorkerUpdate")), [("api_key", KEY)])
    register = proto.WorkerStatus(register=proto.WorkerRegistration(node="raw", pod="raw"))
    await conn.send(grpc_message(register.SerializeToString()))

    async def registered() -> None:
        assert [w.node for w in await grid.workers()] == ["raw"]

    await eventually(registered)
    heartbeat = proto.WorkerStatus(heartbeat=proto.WorkerHeartbeat(session_id="s" * 100))
    message = grpc_message(heartbeat.SerializeToString())
    await conn.send(message[: len(message) - 10])
    conn.cut()
    await grid.healthy()


@pytest.mark.parametrize("name", ["CreateSession", "DiscardDeadLetters"])
async def test_unary_call_cut_mid_message_does_nothing(
    qm: QueueManager, grid: Grid, name: str
) -> None:
    """A unary request cut off before its end is never handled."""
    sid = await grid.create()
    requests: dict[str, Message] = {
        "CreateSession": proto.CreateSessionRequest(
            attributes=proto.SessionAttributes(app_id="cut", tags=["t" * 100] * 50)
        ),
        "DiscardDeadLetters": proto.DiscardDeadLettersRequest(session_id=sid),
    }
    conn = await RawHttp2.connect(qm.address)
    await conn.start_call(path(method(name)), [("api_key", KEY)])
    message = grpc_message(requests[name].SerializeToString())
    await conn.send(message[: len(message) - 3])
    await asyncio.sleep(0.1)
    conn.cut()
    await grid.healthy()


# ---------------------------------------------------------------------- shutdown
async def test_shutting_down_is_unavailable() -> None:
    """While the queue manager drains for shutdown every new call and batch is UNAVAILABLE."""
    async with running_queue_manager(**qm_settings()) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            grid = Grid(channel, MD)
            sid = await grid.create()
            batches: asyncio.Queue[Any] = asyncio.Queue()
            batches.put_nowait(CSR(batch=one_task("b1")))

            async def requests() -> AsyncIterator[Any]:
                while (item := await batches.get()) is not None:
                    yield item

            client = proto.QueueStub(channel).ClientStream(requests(), metadata=with_session(sid))
            worker = ManualWorker(channel, MD)
            await worker.register()
            assert await worker.bound() == sid
            worker.open_stream(sid)
            held = await worker.next_batch()  # in flight: stop() waits for it
            stopping = asyncio.create_task(qm.stop(grace=10.0))
            await asyncio.sleep(0.05)
            create = proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="x"))
            register = proto.WorkerStatus(register=proto.WorkerRegistration())
            refused = {
                "CreateSession": await call(channel, method("CreateSession"), [create], MD),
                "ClientStream": await call(channel, method("ClientStream"), [], with_session(sid)),
                "WorkerUpdate": await call(channel, method("WorkerUpdate"), [register], MD),
                "WorkerStream": await call(
                    channel,
                    method("WorkerStream"),
                    [],
                    (*with_session(sid), ("workerid", worker.id)),
                ),
            }
            assert {k: v.code for k, v in refused.items()} == dict.fromkeys(
                refused, Code.UNAVAILABLE
            ), refused
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=proto.QUEUE_SERVICE_NAME)
            )
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            batches.put_nowait(CSR(batch=one_task("b2")))  # on the stream already open
            async with asyncio.timeout(10):
                ended = await finish(client, streaming=True)
            assert ended.code == Code.UNAVAILABLE, ended
            worker.send(echo(held))
            async with asyncio.timeout(5):
                await stopping  # the in-flight batch answered: no need to wait out the grace
            batches.put_nowait(None)
            await worker.stop()


# ---------------------------------------------------------------------- size limits
async def test_oversized_requests_are_resource_exhausted(grid: Grid) -> None:
    """Unary requests and a registration over the limit: RESOURCE_EXHAUSTED, nothing created."""
    huge = "x" * LIMIT
    create = proto.CreateSessionRequest(
        attributes=proto.SessionAttributes(app_id="big", tags=[huge])
    )
    discard = proto.DiscardDeadLettersRequest(session_id=UNKNOWN, task_ids=[huge])
    register = proto.WorkerStatus(register=proto.WorkerRegistration(sdk_version=huge))
    outcomes = [
        await call(grid.channel, method("CreateSession"), [create], MD),
        await call(grid.channel, method("DiscardDeadLetters"), [discard], MD),
        await call(grid.channel, method("WorkerUpdate"), [register], MD),
    ]
    assert [o.code for o in outcomes] == [Code.RESOURCE_EXHAUSTED] * 3, outcomes
    await grid.healthy()


async def test_oversized_client_batch_is_resource_exhausted(grid: Grid) -> None:
    """A task batch over the limit ends the client stream; the session works on."""
    sid = await grid.create()
    big = CSR(batch=proto.Batch(id="big", tasks=[proto.Task(id="t", payload=b"x" * LIMIT)]))
    outcome = await call(grid.channel, method("ClientStream"), [big], with_session(sid))
    assert outcome.code == Code.RESOURCE_EXHAUSTED, outcome
    assert (await grid.info(sid)).stats.submitted_tasks == 0
    await grid.round_trip(sid)
    await grid.close(sid)
    await grid.healthy()


async def test_oversized_result_batch_is_resource_exhausted(grid: Grid) -> None:
    """A result batch over the limit ends the worker stream; its batch is requeued."""
    sid = await grid.create()
    worker, batch, client, ledger = await bound_worker(grid, sid)
    big = echo(batch)
    big.tasks[0].payload = b"x" * LIMIT
    worker.send(big)
    assert (await worker.stream_outcome()).code == Code.RESOURCE_EXHAUSTED
    again = await redelivered(worker, sid, batch)
    worker.send(echo(again))
    await client.wait_for(2, within=10.0)
    assert set(ledger.delivered.values()) == {1}
    await finish_round(grid, worker, client, sid)


# ---------------------------------------------------------------------- forwarding limits
def _sized(batch: proto.Batch, size: int) -> proto.Batch:
    """``batch`` with its first task's payload grown so the batch is ``size`` bytes."""
    task = batch.tasks[0]
    task.payload = b""
    length = size - batch.ByteSize()
    for _ in range(3):  # length prefixes grow with the payload
        task.payload = b"x" * length
        length -= batch.ByteSize() - size
    assert batch.ByteSize() == size
    return batch


LIMITS = {"default limit": MAX_MESSAGE_BYTES, "configured limit": LIMIT}


@pytest.fixture(params=list(LIMITS.values()), ids=list(LIMITS))
async def limit_grid(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Grid, int]]:
    limit: int = request.param
    settings = qm_settings(max_message_bytes=limit, max_pending_bytes=max(2 * limit, 1 << 20))
    options = [("grpc.max_receive_message_length", 2 * limit)]
    async with running_queue_manager(**settings) as qm:
        async with grpc.aio.insecure_channel(qm.address, options=options) as channel:
            yield Grid(channel, MD), limit


async def test_batch_that_could_not_be_dispatched_is_refused(limit_grid: tuple[Grid, int]) -> None:
    """A task batch within the limit but without room for what dispatch adds is refused."""
    grid, limit = limit_grid
    sid = await grid.create()
    room = limit - FORWARD_HEADROOM_BYTES - 3  # 3 bytes per task for the attempt number
    too_big = CSR(batch=_sized(one_task("too-big"), room + 1))
    outcome = await call(grid.channel, method("ClientStream"), [too_big], with_session(sid))
    assert outcome.code == Code.RESOURCE_EXHAUSTED, outcome
    assert "forwarded" in outcome.details
    biggest = _sized(one_task("biggest"), room)
    submit = start(
        grid.channel,
        method("ClientStream"),
        [CSR(batch=biggest)],
        with_session(sid),
        half_close=False,
        timeout=None,
    )
    worker = ManualWorker(grid.channel, MD)
    await worker.register()
    assert await worker.bound() == sid
    worker.open_stream(sid)
    dispatched = await worker.next_batch()  # with session id and dispatch id, still fits
    assert dispatched.tasks[0].payload == biggest.tasks[0].payload
    answer = echo(dispatched)
    answer.tasks[0].payload = b"done"
    worker.send(answer)
    async with asyncio.timeout(10):
        response = proto.ClientStreamResponse.FromString(await submit.read())
    assert [(t.id, t.payload) for t in response.results.tasks] == [("biggest-t", b"done")]
    submit.cancel()
    await worker.stop()
    await grid.close(sid)
    await grid.healthy()


async def test_result_that_could_not_be_delivered_is_refused(limit_grid: tuple[Grid, int]) -> None:
    """A result batch within the limit but without room for what delivery adds is refused."""
    grid, limit = limit_grid
    sid = await grid.create()
    batch_id = "b" * 128  # the longest id the client may give, copied onto the results
    batch = proto.Batch(id=batch_id, tasks=[proto.Task(id="t" * 128, payload=b"p")])
    submit = start(
        grid.channel,
        method("ClientStream"),
        [CSR(batch=batch)],
        with_session(sid),
        half_close=False,
        timeout=None,
    )
    worker = ManualWorker(grid.channel, MD)
    await worker.register()
    assert await worker.bound() == sid
    worker.open_stream(sid)
    first = await worker.next_batch()
    room = limit - FORWARD_HEADROOM_BYTES - 3
    worker.send(_sized(echo(first), room + 1))
    outcome = await worker.stream_outcome()
    assert outcome.code == Code.RESOURCE_EXHAUSTED, outcome
    assert await worker.bound() == sid  # the batch was requeued; the worker gets it again
    worker.open_stream(sid)
    again = await worker.next_batch()
    result = echo(again)
    result.session_id = sid  # a worker may echo every field
    worker.send(_sized(result, room))
    async with asyncio.timeout(10):
        response = proto.ClientStreamResponse.FromString(await submit.read())
    assert [len(t.payload) for t in response.results.tasks] == [len(result.tasks[0].payload)]
    submit.cancel()
    await worker.stop()
    await grid.close(sid)
    await grid.healthy()
