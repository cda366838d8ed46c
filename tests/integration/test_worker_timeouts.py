"""BIND's task_timeout_ms reaches the worker's executor, over real gRPC.

The first tests use a scripted ``Queue`` servicer on a real ``grpc.aio`` server (port 0): it
registers the worker, binds it with a ``task_timeout_ms`` and sends one batch, pinning the
worker's side of the protocol on its own. The last ones run the real queue manager: a
session's ``task_timeout`` reaches the worker, which fails the slow task itself (well before
the queue manager's own, per-batch safety net), and a retry carries its attempt number.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from alpcrun import proto
from alpcrun.config import WorkerSettings
from alpcrun.testing import running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerRunner
from workers_sdk.runner import RunnerState

pytestmark = pytest.mark.integration
Instr = proto.WorkerInstruction
TIMEOUT_MS = 400


class ScriptedQueue(proto.QueueServicer):
    """Registers one worker, binds it to session s-1 with a task timeout, sends one batch."""

    def __init__(self, batch: proto.Batch, task_timeout_ms: int) -> None:
        self.batch = batch
        self.task_timeout_ms = task_timeout_ms
        self.result: asyncio.Future[proto.Batch] = asyncio.get_running_loop().create_future()
        self.states: list[int] = []
        self.stream_metadata: dict[str, str] = {}

    async def WorkerUpdate(self, request_iterator, context):
        registration = await context.read()
        assert registration.HasField("register")
        await context.write(
            Instr(type=Instr.TYPE_REGISTERED, worker_id="w-1", heartbeat_interval_ms=200)
        )
        await context.write(
            Instr(
                type=Instr.TYPE_BIND,
                session_id="s-1",
                max_inflight_batches=2,
                task_timeout_ms=self.task_timeout_ms,
            )
        )
        while (status := await context.read()) is not grpc.aio.EOF:
            self.states.append(status.heartbeat.state)

    async def WorkerStream(self, request_iterator, context):
        self.stream_metadata = {k: v for k, v in context.invocation_metadata() if k != "user-agent"}
        await context.write(self.batch)
        self.result.set_result(await context.read())
        # Returning ends the session's stream, as the queue manager does after UNBIND.


@asynccontextmanager
async def serving(servicer: ScriptedQueue) -> AsyncIterator[str]:
    server = grpc.aio.server()
    proto.add_queue_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


class Hangs(Worker):
    """b"hang" never finishes on its own."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"hang":
            await asyncio.sleep(60)
        return task.payload.upper()


class SyncOverruns(Worker):
    """b"hang" runs past the limit, then returns."""

    def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"hang":
            time.sleep(TIMEOUT_MS / 1000 + 0.3)
        return task.payload.upper()


def task_batch() -> proto.Batch:
    batch = proto.Batch(id="b-1", session_id="s-1", dispatch_id=7)
    for i, payload in enumerate((b"a", b"hang", b"b")):
        batch.tasks.add(id=f"t{i}", payload=payload, attempt=2)
    return batch


@pytest.mark.parametrize("worker_cls", [Hangs, SyncOverruns])
async def test_bind_task_timeout_fails_the_slow_task_only(worker_cls):
    """With BIND's task_timeout_ms the slow task fails with TIMEOUT; its batch-mates succeed."""
    servicer = ScriptedQueue(task_batch(), TIMEOUT_MS)
    async with serving(servicer) as address:
        settings = WorkerSettings(
            queue_manager=address, concurrency=2, reconnect_delay=0.05, drain_timeout=5.0
        )
        runner = WorkerRunner(worker_cls(), settings)
        run = asyncio.create_task(runner.run())
        try:
            out = await asyncio.wait_for(asyncio.shield(servicer.result), 10)
            stats = runner.statistics()
        finally:
            runner.request_stop()
            await asyncio.wait_for(run, 10)
    assert (out.id, out.dispatch_id) == ("b-1", 7)
    a, hung, b = out.tasks
    assert (a.payload, b.payload) == (b"A", b"B")
    assert hung.error.reason == proto.ErrorReason.ERROR_REASON_TIMEOUT
    assert hung.error.type == "TaskTimeout"
    assert "task_timeout of 0.4s" in hung.error.message
    assert servicer.stream_metadata["sessionid"] == "s-1"
    assert stats.tasks_failed == 1
    assert runner.statistics().state is RunnerState.STOPPED
    assert proto.WorkerState.WORKER_STATE_BOUND in servicer.states
    assert servicer.states[-1] == proto.WorkerState.WORKER_STATE_DRAINING


async def test_bind_without_task_timeout_lets_slow_tasks_finish():
    """task_timeout_ms 0 means no limit: a task slower than 0.4s still succeeds."""
    batch = proto.Batch(id="b-2", session_id="s-1", dispatch_id=1)
    batch.tasks.add(id="t0", payload=b"hang")
    servicer = ScriptedQueue(batch, 0)
    async with serving(servicer) as address:
        settings = WorkerSettings(queue_manager=address, reconnect_delay=0.05)
        runner = WorkerRunner(SyncOverruns(), settings)
        run = asyncio.create_task(runner.run())
        try:
            out = await asyncio.wait_for(asyncio.shield(servicer.result), 10)
        finally:
            runner.request_stop()
            await asyncio.wait_for(run, 10)
    assert out.tasks[0].payload == b"HANG"
    assert not out.tasks[0].HasField("error")


KEY = "timeout-key"
MD = (("api_key", KEY),)


class HangsOnFirstAttempt(Worker):
    """b"hang" waits forever on attempt 1; every task returns the attempt it ran as."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"hang" and task.attempt == 1:
            await asyncio.sleep(60)
        return f"{task.payload.decode()}@{task.attempt}".encode()


async def session_results(address: str, max_attempts: int, payloads: list[bytes]):
    """Create a session with a 0.4s task_timeout, submit one batch, return its results by id."""
    attributes = proto.SessionAttributes(
        app_id="timeouts",
        max_attempts=max_attempts,
        task_timeout=Duration(nanos=TIMEOUT_MS * 10**6),
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = proto.QueueStub(channel)
        session = await stub.CreateSession(
            proto.CreateSessionRequest(attributes=attributes), metadata=MD
        )
        batch = proto.Batch(id="b")
        for i, payload in enumerate(payloads):
            batch.tasks.add(id=f"t{i}", payload=payload)
        requests: asyncio.Queue[proto.ClientStreamRequest] = asyncio.Queue()
        requests.put_nowait(proto.ClientStreamRequest(batch=batch))

        async def outgoing() -> AsyncIterator[proto.ClientStreamRequest]:
            while True:
                yield await requests.get()

        call = stub.ClientStream(outgoing(), metadata=(*MD, ("sessionid", session.id)))
        got: dict[str, proto.Task] = {}
        try:
            while len(got) < len(payloads):
                response = await asyncio.wait_for(call.read(), 10)
                got.update((t.id, t) for t in response.results.tasks)
        finally:
            call.cancel()
        return got


async def test_session_task_timeout_is_enforced_by_the_worker():
    """The real queue manager's BIND carries task_timeout; the worker times out the slow task."""
    async with running_queue_manager(api_key=KEY, scheduler_interval=0.05) as qm:
        settings = WorkerSettings(queue_manager=qm.address, api_key=KEY, reconnect_delay=0.05)
        runner = WorkerRunner(HangsOnFirstAttempt(), settings)
        run = asyncio.create_task(runner.run())
        try:
            got = await session_results(qm.address, 1, [b"a", b"hang", b"b"])
        finally:
            runner.request_stop()
            await asyncio.wait_for(run, 10)
    assert (got["t0"].payload, got["t2"].payload) == (b"a@1", b"b@1")
    error = got["t1"].error
    assert error.reason == proto.ErrorReason.ERROR_REASON_TIMEOUT
    assert "handle() was cancelled" in error.message  # the worker's report, not the safety net


async def test_timed_out_task_is_retried_with_the_next_attempt_number():
    """A TIMEOUT is retryable: the next attempt runs with attempt 2 and succeeds."""
    async with running_queue_manager(api_key=KEY, scheduler_interval=0.05) as qm:
        settings = WorkerSettings(queue_manager=qm.address, api_key=KEY, reconnect_delay=0.05)
        runner = WorkerRunner(HangsOnFirstAttempt(), settings)
        run = asyncio.create_task(runner.run())
        try:
            got = await session_results(qm.address, 2, [b"a", b"hang"])
        finally:
            runner.request_stop()
            await asyncio.wait_for(run, 10)
    assert got["t0"].payload == b"a@1"
    assert got["t1"].payload == b"hang@2"
    assert not got["t1"].HasField("error")


class SyncStuckOnFirstAttempt(Worker):
    """A sync handler that does not return on attempt 1 until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, task: TaskContext) -> bytes:
        if task.attempt == 1:
            self.release.wait(30)
        return f"{task.payload.decode()}@{task.attempt}".encode()


async def test_stuck_sync_handler_is_timed_out_and_redelivered_by_the_queue_manager():
    """A sync handle() that never returns is failed by the queue manager's own task_timeout
    and delivered again; the next attempt's result reaches the client."""
    worker = SyncStuckOnFirstAttempt()
    async with running_queue_manager(api_key=KEY, scheduler_interval=0.05) as qm:
        settings = WorkerSettings(
            queue_manager=qm.address, api_key=KEY, reconnect_delay=0.05, concurrency=2
        )
        runner = WorkerRunner(worker, settings)
        run = asyncio.create_task(runner.run())
        try:
            got = await session_results(qm.address, 2, [b"stuck"])
        finally:
            worker.release.set()
            runner.request_stop()
            await asyncio.wait_for(run, 10)
    assert got["t0"].payload == b"stuck@2"
